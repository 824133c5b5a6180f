/*
 * import_cli.c - `mixpaneld import` (contract in include/import_cli.h).
 *
 * Reads with zlib's gz* functions, which read plain and gzip files alike.
 * NDJSON is streamed line by line; a JSON array is read whole (capped at
 * IMPORT_MAX_ARRAY_BYTES) since it has to be parsed as one value.
 */
#include "import_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "buf.h"
#include "config.h"
#include "ingest.h"
#include "store.h"

#define IMPORT_MAX_LINE ((size_t)16 << 20)
#define IMPORT_MAX_ARRAY_BYTES ((size_t)2 << 30)
#define IMPORT_MAX_REASONS 16

struct import_stats {
	long long records, imported, dups, rejected, lines_bad;
	char reasons[IMPORT_MAX_REASONS][192];
	long long reason_counts[IMPORT_MAX_REASONS];
	size_t n_reasons;
};

struct import_ctx {
	const struct config *cfg;
	const struct config_project *proj;
	struct store_project *sp;
	struct import_stats st;
	const char *file;
	time_t last_progress;
};

static void import_reason(struct import_stats *s, const char *msg)
{
	size_t i;

	for (i = 0; i < s->n_reasons; i++)
		if (!strcmp(s->reasons[i], msg)) {
			s->reason_counts[i]++;
			return;
		}
	if (s->n_reasons < IMPORT_MAX_REASONS) {
		snprintf(s->reasons[s->n_reasons], sizeof s->reasons[0], "%s", msg);
		s->reason_counts[s->n_reasons++] = 1;
	}
}

/* Parse S as exactly one JSON value (only whitespace may follow it). */
static cJSON *import_parse_whole(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);

	if (!v)
		return NULL;
	while (end && end < s + n && strchr(" \t\r\n", *end) && *end)
		end++;
	if (!end || end != s + n) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

static void import_progress(struct import_ctx *c, int force)
{
	time_t now = time(NULL);

	if (!force && now == c->last_progress)
		return;
	c->last_progress = now;
	fprintf(stderr, "\r%s: %lld records, %lld imported, %lld duplicates, %lld rejected   ",
		c->file, c->st.records, c->st.imported, c->st.dups, c->st.rejected);
	if (force)
		fputc('\n', stderr);
}

/* Validate and store one batch (ARR is consumed). Returns 0, or -1 on a
 * storage failure (fatal for the run). */
static int import_flush(struct import_ctx *c, cJSON *arr)
{
	struct ingest_opts o;
	struct ingest_result res;
	enum mp_err rc;
	struct timespec now;
	size_t i;
	int ret = 0;

	if (!cJSON_GetArraySize(arr)) {
		cJSON_Delete(arr);
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	memset(&o, 0, sizeof o);
	o.endpoint = INGEST_IMPORT;
	o.cfg = c->cfg;
	o.project = c->proj;
	o.now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	rc = ingest_prepare(arr, &o, &res);
	if (rc != MP_OK) {
		fprintf(stderr, "\nmixpaneld import: %s\n", res.first_error[0] ? res.first_error : mp_strerror(rc));
		ingest_result_free(&res);
		return -1;
	}
	c->st.records += (long long)res.n_records;
	for (i = 0; i < res.n_failures; i++) {
		c->st.rejected++;
		import_reason(&c->st, res.failures[i].message);
	}
	if (res.batch.n_events) {
		rc = store_write(c->sp, &res.batch);
		if (rc != MP_OK) {
			fprintf(stderr, "\nmixpaneld import: storage: %s\n", res.batch.err);
			ret = -1;
		} else {
			c->st.imported += (long long)res.batch.n_new;
			c->st.dups += (long long)res.batch.n_dup;
		}
	}
	ingest_result_free(&res);
	import_progress(c, 0);
	return ret;
}

static int import_file(struct import_ctx *c, const char *path)
{
	gzFile gz = gzopen(path, "rb");
	struct buf line;
	cJSON *batch = NULL;
	int ch = 0, ret = 0, is_array = 0, n_batch = 0;
	long long lineno = 0;

	c->file = path;
	if (!gz) {
		fprintf(stderr, "mixpaneld import: cannot open %s\n", path);
		return -1;
	}
	gzbuffer(gz, 1 << 18);
	/* peek the first non-space byte: '[' means one JSON array */
	while ((ch = gzgetc(gz)) != -1 && strchr(" \t\r\n", ch))
		;
	if (ch == '[')
		is_array = 1;
	buf_init(&line, is_array ? IMPORT_MAX_ARRAY_BYTES : IMPORT_MAX_LINE);
	if (ch != -1 && buf_putc(&line, ch) != MP_OK)
		ret = -1;
	if (is_array) {
		char tmp[1 << 16];
		int n;
		cJSON *arr, *it;

		while (ret == 0 && (n = gzread(gz, tmp, sizeof tmp)) > 0)
			if (buf_append(&line, tmp, (size_t)n) != MP_OK)
				ret = -1;
		arr = ret == 0 ? import_parse_whole(line.data, line.len) : NULL;
		if (!cJSON_IsArray(arr)) {
			fprintf(stderr, "mixpaneld import: %s: not a valid JSON array\n", path);
			cJSON_Delete(arr);
			ret = -1;
		} else {
			/* move the records into batches of the request limit */
			while (ret == 0 && arr->child) {
				if (!batch && !(batch = cJSON_CreateArray()))
					ret = -1;
				it = cJSON_DetachItemViaPointer(arr, arr->child);
				cJSON_AddItemToArray(batch, it);
				if (++n_batch >= c->cfg->max_events_per_request) {
					ret = import_flush(c, batch);
					batch = NULL;
					n_batch = 0;
				}
			}
			cJSON_Delete(arr);
		}
	} else {
		while (ret == 0) {
			ch = gzgetc(gz);
			if (ch != -1 && ch != '\n') {
				if (buf_putc(&line, ch) != MP_OK) {
					fprintf(stderr, "mixpaneld import: %s:%lld: line too long\n", path, lineno + 1);
					ret = -1;
				}
				continue;
			}
			lineno++;
			{
				size_t i = 0;

				while (i < line.len && strchr(" \t\r", line.data[i]))
					i++;
				if (i < line.len) {
					cJSON *rec = import_parse_whole(line.data, line.len);

					if (!batch && !(batch = cJSON_CreateArray()))
						ret = -1;
					if (!rec) {
						c->st.records++;
						c->st.rejected++;
						import_reason(&c->st, "line is not valid JSON");
					} else if (batch) {
						cJSON_AddItemToArray(batch, rec);
						n_batch++;
					}
					if (batch && n_batch >= c->cfg->max_events_per_request) {
						if (import_flush(c, batch) != 0)
							ret = -1;
						batch = NULL;
						n_batch = 0;
					}
				}
			}
			buf_reset(&line);
			if (ch == -1)
				break;
		}
	}
	if (batch && ret == 0)
		ret = import_flush(c, batch);
	else
		cJSON_Delete(batch);
	{
		int errnum;
		const char *e = gzerror(gz, &errnum);

		if (errnum != Z_OK && errnum != Z_STREAM_END) {
			fprintf(stderr, "mixpaneld import: %s: %s\n", path, e);
			ret = -1;
		}
	}
	gzclose(gz);
	buf_free(&line);
	import_progress(c, 1);
	return ret;
}

int import_cli_run(const char *cfg_path, const char *data_dir, const char *project,
		   const char *const *files, int n_files)
{
	struct config *cfg = NULL;
	struct store *st = NULL;
	struct import_ctx c;
	char err[512];
	int i, failed = 0;
	size_t k;

	if (config_load(cfg_path, &cfg, err, sizeof err) != MP_OK) {
		fprintf(stderr, "mixpaneld: %s\n", err);
		return 2;
	}
	if (data_dir) {
		free(cfg->data_dir);
		if (!(cfg->data_dir = strdup(data_dir))) {
			config_free(cfg);
			return 2;
		}
	}
	memset(&c, 0, sizeof c);
	c.cfg = cfg;
	if (!(c.proj = config_project_by_name(cfg, project))) {
		fprintf(stderr, "mixpaneld import: no project '%s' in %s\n", project, cfg_path);
		config_free(cfg);
		return 2;
	}
	if (store_open(cfg, &st, err, sizeof err) != MP_OK) {
		fprintf(stderr, "mixpaneld import: storage: %s\n", err);
		config_free(cfg);
		return 2;
	}
	c.sp = store_project_get(st, c.proj);
	for (i = 0; i < n_files; i++)
		if (import_file(&c, files[i]) != 0)
			failed = 1;
	printf("import into project %s: %lld records read, %lld imported, %lld duplicates, %lld rejected\n",
	       project, c.st.records, c.st.imported, c.st.dups, c.st.rejected);
	for (k = 0; k < c.st.n_reasons; k++)
		printf("  rejected %lld: %s\n", c.st.reason_counts[k], c.st.reasons[k]);
	store_close(st);
	config_free(cfg);
	return failed ? 1 : (c.st.rejected ? 1 : 0);
}
