/*
 * store_fixture.h - a store on a temporary data_dir for the unit tests of
 * store.c and colstore.c: one project "p" (id 1, token tok1, secret s1).
 *
 *   struct store_fx f;
 *   if (store_fx_open(&f, "month", "store") == 0) { ... f.sp ... }
 *   store_fx_reopen(&f, NULL);     restart on the same files (or with another period)
 *   store_fx_close(&f);            closes and removes the directory
 *   store_fx_write(f.sp, evs, n, recv_ms)   writes struct ev's as one batch
 * On failure the helpers print why, mark the current test failed and
 * return -1 (fields they could not open are NULL).
 */
#ifndef MP_STORE_FIXTURE_H
#define MP_STORE_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "store.h"
#include "testlib.h"

struct store_fx {
	char dir[64];
	struct config *cfg;
	struct store *st;
	struct store_project *sp;
};

static int store_fx_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Open the store of f->cfg. */
static int store_fx_store(struct store_fx *f)
{
	char err[512] = "";

	if (store_open(f->cfg, &f->st, err, sizeof err) != MP_OK) {
		fprintf(stderr, "store_open: %s\n", err);
		f->st = NULL;
		tl_cur_failed = 1;
		return -1;
	}
	f->sp = store_project_get(f->st, &f->cfg->projects[0]);
	return f->sp ? 0 : -1;
}

/* (Re)create the config for PERIOD ("month" or "day") and open the store. */
static int store_fx_start(struct store_fx *f, const char *period)
{
	char text[512], err[512] = "";

	snprintf(text, sizeof text,
		 "[storage]\ndata_dir = %s/data\nshard_period = %s\n"
		 "[project.p]\nid = 1\ntoken = tok1\napi_secret = s1\n", f->dir, period);
	if (config_parse(text, strlen(text), "test.ini", &f->cfg, err, sizeof err) != MP_OK) {
		fprintf(stderr, "config: %s\n", err);
		f->cfg = NULL;
		tl_cur_failed = 1;
		return -1;
	}
	return store_fx_store(f);
}

/* TAG names the temporary directory (/tmp/mpd-TAG-XXXXXX). */
static int store_fx_open(struct store_fx *f, const char *period, const char *tag)
{
	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/mpd-%s-XXXXXX", tag);
	if (!mkdtemp(f->dir)) {
		perror("mkdtemp");
		f->dir[0] = '\0';
		tl_cur_failed = 1;
		return -1;
	}
	return store_fx_start(f, period);
}

/* Close and open the store again on the same files; with PERIOD (not NULL)
 * under a new config with that shard_period. */
static int store_fx_reopen(struct store_fx *f, const char *period)
{
	store_close(f->st);
	f->st = NULL;
	f->sp = NULL;
	if (period) {
		config_free(f->cfg);
		f->cfg = NULL;
		return store_fx_start(f, period);
	}
	return store_fx_store(f);
}

/* ---------- writing events ---------- */

struct ev {
	int64_t t;
	const char *name, *did, *iid;
	const char *props;   /* JSON with ' for ", or NULL for {} */
};

struct wres {
	enum mp_err rc;
	size_t n_new, n_dup;
	char err[160];
};

/* Write EVS as one batch received at RECV_MS, with PROPS[i] (parsed; NULL
 * becomes {}) as their properties.  Like ingest, the insert id is also a
 * property ("with $insert_id if sent"). */
static struct wres store_fx_write_parsed(struct store_project *sp, const struct ev *evs, cJSON **props,
					 size_t n, int64_t recv_ms)
{
	struct store_event *se = calloc(n ? n : 1, sizeof *se);
	struct store_batch b;
	struct wres w;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!props[i])
			props[i] = cJSON_CreateObject();
		if (evs[i].iid && !cJSON_GetObjectItemCaseSensitive(props[i], "$insert_id"))
			cJSON_AddStringToObject(props[i], "$insert_id", evs[i].iid);
		se[i].time_ms = evs[i].t;
		se[i].name = evs[i].name;
		se[i].distinct_id = evs[i].did;
		se[i].insert_id = evs[i].iid;
		se[i].props = props[i];
	}
	memset(&b, 0, sizeof b);
	b.events = se;
	b.n_events = n;
	b.recv_ms = recv_ms;
	w.rc = store_write(sp, &b);
	w.n_new = b.n_new;
	w.n_dup = b.n_dup;
	snprintf(w.err, sizeof w.err, "%s", b.err);
	free(se);
	return w;
}

/* The same with each event's props text parsed (J()). */
static struct wres store_fx_write(struct store_project *sp, const struct ev *evs, size_t n, int64_t recv_ms)
{
	cJSON **props = calloc(n ? n : 1, sizeof *props);
	struct wres w;
	size_t i;

	for (i = 0; i < n; i++)
		props[i] = evs[i].props ? J(evs[i].props) : NULL;
	w = store_fx_write_parsed(sp, evs, props, n, recv_ms);
	for (i = 0; i < n; i++)
		cJSON_Delete(props[i]);
	free(props);
	return w;
}

static void store_fx_close(struct store_fx *f)
{
	store_close(f->st);
	config_free(f->cfg);
	if (f->dir[0])
		nftw(f->dir, store_fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	memset(f, 0, sizeof *f);
}

#endif
