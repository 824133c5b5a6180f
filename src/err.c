/*
 * err.c - messages for enum mp_err (see include/err.h).
 */
#include "err.h"

const char *mp_strerror(enum mp_err e)
{
	switch (e) {
	case MP_OK: return "ok";
	case MP_E_NOMEM: return "out of memory";
	case MP_E_IO: return "i/o error";
	case MP_E_CONFIG: return "invalid configuration";
	case MP_E_PARSE: return "cannot decode payload";
	case MP_E_INVALID: return "invalid record";
	case MP_E_TOOBIG: return "size limit exceeded";
	case MP_E_AUTH: return "invalid credentials";
	case MP_E_NOTFOUND: return "not found";
	case MP_E_STORE: return "storage error";
	case MP_E_FULL: return "storage full or read-only";
	case MP_E_SHUTDOWN: return "server is shutting down";
	case MP_E_BUSY: return "server busy, retry later";
	}
	return "unknown error";
}
