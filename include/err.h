/*
 * err.h - the one error enum of mixpaneld.
 *
 * Every fallible function returns an enum mp_err (or NULL plus a code through
 * an out-parameter).  Codes are never reused: a retired code stays in the enum
 * with an OBSOLETE name.  mp_strerror() is a full switch without a default so
 * that -Wall -Werror flags a code that has no message.
 *
 * Out-of-memory policy: on the request path every allocation failure becomes
 * MP_E_NOMEM and the request is answered 503; at start-up we print and exit.
 */
#ifndef MP_ERR_H
#define MP_ERR_H

enum mp_err {
	MP_OK = 0,
	MP_E_NOMEM,      /* allocation failed */
	MP_E_IO,         /* open/read/write of a file failed (errno is set) */
	MP_E_CONFIG,     /* configuration file is invalid */
	MP_E_PARSE,      /* request body or payload cannot be decoded */
	MP_E_INVALID,    /* payload decoded but a record is invalid */
	MP_E_TOOBIG,     /* a size limit was exceeded */
	MP_E_AUTH,       /* missing or wrong credentials */
	MP_E_NOTFOUND,   /* no such project, path or object */
	MP_E_STORE,      /* SQLite reported an error */
	MP_E_FULL,       /* disk full or data directory read-only */
	MP_E_SHUTDOWN,   /* server is stopping; request not accepted */
	MP_E_BUSY        /* transient overload; retry later */
};

/* Static English message for a code; never NULL. */
const char *mp_strerror(enum mp_err e);

#endif
