/*
 * import_cli.h - `mixpaneld import`: load Mixpanel export files.
 *
 * Each FILE is newline-delimited JSON (one event per line) or one JSON array
 * of events, optionally gzip-compressed (detected from the content, not the
 * name).  Records go through ingest_prepare() as /import (non-strict) in
 * batches of max_events_per_request and through the store writer, so
 * validation and dedup are exactly those of /import.  A progress line goes
 * to stderr; the summary (imported, duplicates, rejected with reasons) to
 * stdout.  Exit status: 0 when every record was imported or deduplicated,
 * 1 when some were rejected or a file could not be read, 2 on usage or
 * configuration errors.
 */
#ifndef MP_IMPORT_CLI_H
#define MP_IMPORT_CLI_H

int import_cli_run(const char *cfg_path, const char *data_dir, const char *project,
		   const char *const *files, int n_files);

#endif
