/*
 * trivial_server.c - the ceiling for the /track single-event benchmark: a
 * libmicrohttpd server that reads each request's body and answers "1"
 * (text/plain), doing nothing else.
 *
 *   trivial_server [--port N] [--threads N] [--bind ADDR]
 *
 * Why: the target for one event per request is relative (>= 50% of
 * the requests/s of this server), so that the number measures mixpaneld's
 * own cost and not the machine or libmicrohttpd.  It therefore starts the
 * daemon exactly as src/http_server.c does: MHD_USE_AUTO_INTERNAL_THREAD,
 * MHD_ALLOW_SUSPEND_RESUME, MHD_USE_ERROR_LOG, a thread pool of --threads,
 * a 120 s connection timeout, a URI-log and a completion callback.
 *
 * Prints "listening on http://ADDR:PORT" to stderr once the socket listens
 * (--port 0 picks a free port); stops on SIGTERM or SIGINT.  Signals are
 * blocked in every thread and taken by sigwait() in the main thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The one answer, shared by every request (libmicrohttpd refcounts it). */
static struct MHD_Response *ts_one;

/* Per-request state lives in *con_cls: NULL before the URI callback,
 * &ts_headers after it (headers seen), &ts_body once the access callback
 * has been called (body in progress or done).  mixpaneld allocates its
 * request context at the same points; the ceiling only flips a pointer. */
static char ts_headers, ts_body;

static void *ts_uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
	(void)cls;
	(void)uri;
	(void)con;
	return &ts_headers;
}

static void ts_completed_cb(void *cls, struct MHD_Connection *con, void **con_cls,
			    enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)con;
	(void)toe;
	*con_cls = NULL;
}

static enum MHD_Result ts_access_cb(void *cls, struct MHD_Connection *con, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload_data;
	if (*con_cls != &ts_body) {
		/* first call: headers only; the body (if any) follows */
		*con_cls = &ts_body;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* consume (and drop) this part of the body */
		return MHD_YES;
	}
	return MHD_queue_response(con, MHD_HTTP_OK, ts_one);
}

static long ts_num(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "trivial_server: %s: '%s' is not an integer in %ld..%ld\n", opt, s, lo, hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *di;
	const char *bind = "127.0.0.1";
	long port = 0, threads = 2;
	sigset_t set;
	int i, sig;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			port = ts_num("--port", argv[++i], 0, 65535);
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			threads = ts_num("--threads", argv[++i], 1, 256);
		} else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
			bind = argv[++i];
		} else {
			fprintf(stderr, "usage: trivial_server [--port N] [--threads N] [--bind IPv4]\n");
			return 2;
		}
	}
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, bind, &sa.sin_addr) != 1) {
		fprintf(stderr, "trivial_server: --bind '%s' is not an IPv4 address\n", bind);
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	ts_one = MHD_create_response_from_buffer(1, (void *)"1", MHD_RESPMEM_PERSISTENT);
	if (!ts_one || MHD_add_response_header(ts_one, "Content-Type", "text/plain") != MHD_YES) {
		fprintf(stderr, "trivial_server: cannot create the response\n");
		return 1;
	}
	d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
			     (uint16_t)port, NULL, NULL, ts_access_cb, NULL,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
			     MHD_OPTION_URI_LOG_CALLBACK, ts_uri_cb, NULL,
			     MHD_OPTION_NOTIFY_COMPLETED, ts_completed_cb, NULL,
			     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "trivial_server: cannot listen on %s:%ld: %s\n", bind, port,
			errno ? strerror(errno) : "libmicrohttpd refused the options");
		return 1;
	}
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	fprintf(stderr, "trivial_server: listening on http://%s:%u (%ld threads)\n", bind,
		di ? (unsigned)di->port : (unsigned)port, threads);
	for (;;) {
		if (sigwait(&set, &sig) == 0)
			break;
	}
	MHD_stop_daemon(d);
	MHD_destroy_response(ts_one);
	return 0;
}
