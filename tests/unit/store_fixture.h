/*
 * store_fixture.h - a store on a temporary data_dir for the unit tests of
 * store.c and colstore.c: one project "p" (id 1, token tok1, secret s1).
 *
 *   struct store_fx f;
 *   if (store_fx_open(&f, "month", "store") == 0) { ... f.sp ... }
 *   store_fx_reopen(&f, NULL);     restart on the same files (or with another period)
 *   store_fx_close(&f);            closes and removes the directory
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
	if (store_open(f->cfg, &f->st, err, sizeof err) != MP_OK) {
		fprintf(stderr, "store_open: %s\n", err);
		f->st = NULL;
		tl_cur_failed = 1;
		return -1;
	}
	f->sp = store_project_get(f->st, &f->cfg->projects[0]);
	return f->sp ? 0 : -1;
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
	char err[512] = "";

	store_close(f->st);
	f->st = NULL;
	f->sp = NULL;
	if (period) {
		config_free(f->cfg);
		f->cfg = NULL;
		return store_fx_start(f, period);
	}
	if (store_open(f->cfg, &f->st, err, sizeof err) != MP_OK) {
		fprintf(stderr, "store_open: %s\n", err);
		f->st = NULL;
		tl_cur_failed = 1;
		return -1;
	}
	f->sp = store_project_get(f->st, &f->cfg->projects[0]);
	return f->sp ? 0 : -1;
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
