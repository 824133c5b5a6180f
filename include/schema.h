/*
 * schema.h - the SQL migrations compiled in from sql/ (build/gen/schema.c).
 *
 * kind is "shard" (event shard files) or "meta" (project meta.db); version is
 * the NNN of the file name.  store.c applies, in a transaction, every
 * migration of a file's kind whose version is above PRAGMA user_version, and
 * sets user_version to it.  Migrations are append-only: never edit one that
 * has shipped; add NNN+1.
 */
#ifndef MP_SCHEMA_H
#define MP_SCHEMA_H

struct schema_migration {
	const char *kind;
	unsigned version;
	const char *file;
	const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const unsigned schema_n_migrations;

#endif
