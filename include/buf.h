/*
 * buf.h - a growable byte buffer with a size cap (after curl's dynbuf).
 *
 * Fields are private to buf.c except for reading data/len.  Every append
 * returns MP_OK, MP_E_NOMEM, or MP_E_TOOBIG when the cap would be exceeded;
 * after an error the buffer keeps its previous content.  The data is always
 * NUL-terminated (the NUL is not counted in len).  buf_take() passes
 * ownership of the data to the caller and resets the buffer.
 */
#ifndef MP_BUF_H
#define MP_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

struct buf {
	char *data;
	size_t len;
	size_t cap;   /* allocated */
	size_t max;   /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                  /* len = 0, keeps memory */
char *buf_take(struct buf *b, size_t *len);     /* caller frees; never NULL on success path */

/* Make room for N more bytes in one allocation (MP_E_TOOBIG past max). */
__attribute__((warn_unused_result))
enum mp_err buf_reserve(struct buf *b, size_t n);

__attribute__((warn_unused_result))
enum mp_err buf_append(struct buf *b, const void *p, size_t n);
__attribute__((warn_unused_result))
static inline enum mp_err buf_putc(struct buf *b, int c)
{
	if (b->len + 1 < b->cap && b->len < b->max) {
		b->data[b->len++] = (char)c;
		b->data[b->len] = '\0';
		return MP_OK;
	}
	{
		char ch = (char)c;

		return buf_append(b, &ch, 1);
	}
}
__attribute__((warn_unused_result))
enum mp_err buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends S (N bytes) as a JSON string literal with quotes and escapes;
 * bytes that are not valid UTF-8 become U+FFFD, so the output always is. */
__attribute__((warn_unused_result))
enum mp_err buf_json_str(struct buf *b, const char *s, size_t n);
/* Appends a JSON number: integral values below 1e18 as integers (-0 as 0),
 * others with the shortest of %.15g / %.17g that reads back exactly. */
__attribute__((warn_unused_result))
enum mp_err buf_json_num(struct buf *b, double d);
/* Length (1-4) of the valid UTF-8 sequence at S with N bytes left, or 0
 * if the bytes there are not UTF-8 (overlong forms and surrogates too). */
size_t buf_utf8_seq(const unsigned char *s, size_t n);

/* Appends an unsigned LEB128 varint. */
__attribute__((warn_unused_result))
enum mp_err buf_varint(struct buf *b, uint64_t v);

#endif
