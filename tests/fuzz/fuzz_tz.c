/*
 * fuzz_tz.c - libFuzzer target for tz_parse() (src/tz.c).
 *
 * Feeds the raw bytes, as an exact-size heap copy (so ASan sees any read
 * past the end), to tz_parse() and checks the contract of include/tz.h:
 *   failure: MP_E_INVALID or MP_E_NOMEM, and *out untouched.
 *   success: on fixed instants (1906 .. 2100, far past and future) and on
 *            instants read from the input (near its transitions): |offset| < 26 h; to_civil gives
 *            in-range fields; for every unit floor(x) <= x < next(floor(x)),
 *            floor is a whole second, floor(floor(x)) == floor(x),
 *            floor(next) == next, floor(next - 1) == floor(x); the key is
 *            NUL-terminated and as long as returned; tz_from_civil of x's
 *            wall minute is at most x and within 52 h + 1 min of it
 *            (both are within 26 h of that wall time).
 * Any violation abort()s so libFuzzer records the input.
 */
#include "tz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_DAY_MS INT64_C(86400000)

static void fuzz_check_instant(const struct tz *tz, int64_t x)
{
	struct tz_civil c;
	int32_t off = tz_offset_at(tz, x);
	int64_t fc;
	int u;

	if (off <= -93600 || off >= 93600)
		abort();
	tz_to_civil(tz, x, &c);
	if (c.month < 1 || c.month > 12 || c.day < 1 || c.day > 31 || c.hour < 0 || c.hour > 23 ||
	    c.minute < 0 || c.minute > 59 || c.second < 0 || c.second > 59 || c.wday < 0 || c.wday > 6)
		abort();
	for (u = TZ_MINUTE; u <= TZ_MONTH; u++) {
		enum tz_unit unit = (enum tz_unit)u;
		int64_t f = tz_bucket_floor(tz, unit, x);
		int64_t n = tz_bucket_next(tz, unit, f);
		char key[64];
		size_t len;

		if (!(f <= x && x < n) || f % 1000 != 0)
			abort();
		if (tz_bucket_floor(tz, unit, f) != f || tz_bucket_floor(tz, unit, n) != n ||
		    tz_bucket_floor(tz, unit, n - 1) != f)
			abort();
		memset(key, 'X', sizeof key);
		len = tz_bucket_key(tz, unit, f, key, sizeof key);
		if (len == 0 || len >= sizeof key || key[len] != '\0' || strlen(key) != len)
			abort();
	}
	fc = tz_from_civil(tz, c.year, c.month, c.day, c.hour, c.minute);
	if (fc > x || x - fc > 60000 + 52 * INT64_C(3600000))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t fixed[] = {
		0, -1, INT64_C(1710064800000), INT64_C(1730624400000), INT64_C(4108701600000),
		INT64_C(-2000000000000), INT64_C(-60000000000000), INT64_C(250000000000000),
		TZ_MS_MAX - 400 * FUZZ_DAY_MS, -TZ_MS_MAX + 400 * FUZZ_DAY_MS,
	};
	struct tz *sentinel = (struct tz *)&sentinel, *tz = sentinel;
	unsigned char *copy;
	enum mp_err rc;
	size_t i;

	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	rc = tz_parse(copy, size, &tz);
	if (rc != MP_OK) {
		if (tz != sentinel || (rc != MP_E_INVALID && rc != MP_E_NOMEM))
			abort();
		free(copy);
		return 0;
	}
	if (!tz || tz == sentinel)
		abort();
	for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		fuzz_check_instant(tz, fixed[i]);
	/* instants near the file's own transitions: 8- and 4-byte big-endian
	 * words at 16 places spread over the input, read as seconds (the
	 * transition times of the 64- and 32-bit blocks are such words) */
	for (i = 0; size >= 8 && i < 16; i++) {
		size_t at = (size - 8) * i / 15;
		int64_t s64 = 0, s32;
		size_t j;

		for (j = 0; j < 8; j++)
			s64 = (int64_t)((uint64_t)s64 << 8 | copy[at + j]);
		s32 = (int32_t)((uint32_t)copy[at] << 24 | (uint32_t)copy[at + 1] << 16 |
				(uint32_t)copy[at + 2] << 8 | copy[at + 3]);
		if (s64 > -INT64_C(8000000000000) && s64 < INT64_C(8000000000000)) {
			fuzz_check_instant(tz, s64 * 1000);
			fuzz_check_instant(tz, s64 * 1000 - 1);
		}
		fuzz_check_instant(tz, s32 * 1000);
		fuzz_check_instant(tz, s32 * 1000 - 1);
	}
	tz_free(tz);
	free(copy);
	return 0;
}
