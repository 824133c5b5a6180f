/*
 * main.c - command line of mixpaneld.
 *
 *   mixpaneld --config FILE [--port N] [--data-dir DIR]
 *       run the server in the foreground, logging to stderr; SIGTERM/SIGINT
 *       stop accepting, drain requests in flight, commit, exit 0.
 *   mixpaneld import --config FILE --project NAME FILE...
 *       load Mixpanel export files (NDJSON or a JSON array, optionally .gz)
 *       through the /import validation and dedup path (see import_cli.c).
 *
 * Signals are blocked in every thread and taken synchronously by sigwait()
 * in the main thread, so no async-signal-safety concerns arise.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "http_server.h"
#include "import_cli.h"
#include "jarena.h"
#include "log.h"
#include "store.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mixpaneld --config FILE [--port N] [--data-dir DIR]\n"
		"       mixpaneld import --config FILE --project NAME FILE...\n"
		"       mixpaneld --version\n");
}

static int main_serve(const char *cfg_path, const char *port, const char *data_dir)
{
	struct config *cfg = NULL;
	struct store *st = NULL;
	struct http_server *srv = NULL;
	char err[512];
	sigset_t set;
	int sig = 0, left;

	if (config_load(cfg_path, &cfg, err, sizeof err) != MP_OK) {
		fprintf(stderr, "mixpaneld: %s\n", err);
		return 2;
	}
	/* before any thread exists: it changes cJSON's global hooks */
	if (jarena_install() != 0)
		log_warn("cannot reserve the request arenas' address range: request trees use malloc");
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);

		if (*end || p < 0 || p > 65535) {
			fprintf(stderr, "mixpaneld: --port: '%s' is not a port number (0-65535)\n", port);
			config_free(cfg);
			return 2;
		}
		cfg->port = (int)p;
	}
	if (data_dir) {
		char *d = strdup(data_dir);

		if (!d) {
			config_free(cfg);
			return 1;
		}
		free(cfg->data_dir);
		cfg->data_dir = d;
	}
	/* block the signals before any thread starts, so all threads inherit it */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN); /* a file size limit becomes EFBIG, i.e. a storage error */

	if (store_open(cfg, &st, err, sizeof err) != MP_OK) {
		fprintf(stderr, "mixpaneld: storage: %s\n", err);
		config_free(cfg);
		return 1;
	}
	if (http_server_start(cfg, st, &srv, err, sizeof err) != MP_OK) {
		fprintf(stderr, "mixpaneld: %s\n", err);
		store_close(st);
		config_free(cfg);
		return 1;
	}
	log_info("mixpaneld %s listening on %s://%s:%u (%d threads, data in %s)", MIXPANELD_VERSION,
		 cfg->tls_cert_pem ? "https" : "http", cfg->bind, (unsigned)http_server_port(srv),
		 cfg->threads, cfg->data_dir);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP ignored (restart to reload the configuration)");
			continue;
		}
		break;
	}
	log_info("signal %d: stopping; draining requests in flight", sig);
	left = http_server_stop(srv, 30000);
	if (left)
		log_warn("%d requests still in flight at the drain deadline", left);
	store_close(st);
	log_info("stopped cleanly");
	config_free(cfg);
	return 0;
}

/* One open shard costs three descriptors (db, -wal, -shm), and a group
 * commit may touch many shards: use all the descriptors we may. */
static void main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	const char *cfg_path = NULL, *port = NULL, *data_dir = NULL, *project = NULL;
	int i, import = 0, first_file = 0;

	if (argc > 1 && !strcmp(argv[1], "import"))
		import = 1;
	for (i = 1 + import; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			cfg_path = argv[++i];
		} else if (!strcmp(argv[i], "--port") && i + 1 < argc && !import) {
			port = argv[++i];
		} else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) {
			data_dir = argv[++i];
		} else if (!strcmp(argv[i], "--project") && i + 1 < argc && import) {
			project = argv[++i];
		} else if (!strcmp(argv[i], "--version")) {
			printf("mixpaneld %s\n", MIXPANELD_VERSION);
			return 0;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (import && argv[i][0] != '-') {
			first_file = i;
			break;
		} else {
			fprintf(stderr, "mixpaneld: unknown or incomplete argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!cfg_path) {
		usage(stderr);
		return 2;
	}
	main_raise_nofile();
	if (import) {
		if (!project || !first_file) {
			fprintf(stderr, "mixpaneld import: --project NAME and at least one FILE are required\n");
			return 2;
		}
		return import_cli_run(cfg_path, data_dir, project, (const char *const *)argv + first_file,
				      argc - first_file);
	}
	return main_serve(cfg_path, port, data_dir);
}
