/*
 * Workbench's native NDJSON fast path: flat JSON objects into Arrow columns.
 *
 * One pass over each line parses the record *and* proves it is the common, simple
 * case: a flat object whose keys are schema fields (each at most once), whose string
 * values are printable ASCII without escapes, whose numbers are JSON numbers of the
 * field's type, and whose other values are null. Such a line is written into the
 * output columns exactly as polars' `read_ndjson` would decode it. Every other line
 * (unknown or repeated keys, escapes, non-ASCII, booleans, nested values, wrong
 * types, broken JSON, oversize records) is only *flagged*: the Python decoder takes
 * it through the general path, which finds the exact reason. So this code never
 * decides what is rejected, only what is certainly accepted.
 *
 * Columns are written compactly (one row per accepted line, in line order):
 *   str / ts  Arrow string views (16 bytes: length, then 12 inline bytes or a
 *             4-byte prefix, buffer 0 and an offset) over one data buffer per column
 *   float     float64, parsed with strtod_l in the C locale (correctly rounded, as
 *             polars' parser is)
 *   int       int64
 * plus one validity byte per row and column. A ts number is kept as its text, as
 * polars keeps it, so only canonical integers (no sign on zero, no fraction, no
 * exponent) are taken here.
 *
 * Built and loaded by workbench/native/__init__.py (ctypes, which releases the GIL
 * during the call).
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { K_STR = 0, K_FLOAT = 1, K_INT = 2, K_TS = 3 };
enum { MAX_FIELDS = 64, MAX_NUMBER = 64 };

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the string views are built for a little-endian machine"
#endif

static locale_t c_locale;

/* Called once, before any other call, by the loader (under its lock). */
int64_t wb_init(void) {
    if (!c_locale) c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale ? 1 : 0;
}

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    return p;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* A string body: printable ASCII without backslash. Returns the closing quote or NULL.
 * Eight bytes at a time: a word with no quote, backslash, control or non-ASCII byte is
 * skipped whole (the bit tricks are exact for the first such byte, which the byte loop
 * then judges). */
static inline const uint8_t *scan_string(const uint8_t *p, const uint8_t *e) {
    while (e - p >= 8) {
        uint64_t w, q, b;
        memcpy(&w, p, 8);
        q = w ^ (ONES * '"');
        b = w ^ (ONES * '\\');
        uint64_t hit = (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((w - ONES * 0x20) & ~w) | w) & HIGHS;
        if (hit) {
            p += __builtin_ctzll(hit) >> 3;
            break;
        }
        p += 8;
    }
    while (p < e) {
        uint8_t c = *p;
        if (c == '"') return p;
        if (c < 0x20 || c >= 0x80 || c == '\\') return NULL;
        p++;
    }
    return NULL;
}

/* Whether the key at p is name followed by its closing quote. */
static inline int is_key(const uint8_t *p, const uint8_t *e, const char *name, int32_t len) {
    if (e - p <= len || p[len] != '"') return 0;
    for (int32_t k = 0; k < len; k++)
        if (p[k] != (uint8_t)name[k]) return 0;
    return 1;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * Clinger's fast path: a number with at most 15 significant digits and a decimal
 * exponent within +-22 is an exact integer times or over an exact power of ten, so
 * one IEEE multiplication or division rounds it correctly. Returns 0 for anything
 * else (strtod_l takes it). The token is already known to be a JSON number.
 */
static inline int fast_double(const uint8_t *s, const uint8_t *e, double *out) {
    int neg = *s == '-';
    s += neg;
    uint64_t m = 0;
    int digits = 0, scale = 0;
    for (; s < e && *s >= '0' && *s <= '9'; s++) {
        if (digits || *s != '0') digits++;
        m = m * 10 + (uint64_t)(*s - '0');
        if (digits > 15) return 0;
    }
    if (s < e && *s == '.') {
        for (s++; s < e && *s >= '0' && *s <= '9'; s++) {
            if (digits || *s != '0') digits++;
            m = m * 10 + (uint64_t)(*s - '0');
            scale--;
            if (digits > 15) return 0;
        }
    }
    if (s < e) { /* exponent */
        s++;
        int eneg = 0, ev = 0;
        if (*s == '+' || *s == '-') eneg = *s++ == '-';
        for (; s < e; s++) {
            ev = ev * 10 + (*s - '0');
            if (ev > 400) return 0;
        }
        scale += eneg ? -ev : ev;
    }
    if (scale < -22 || scale > 22) return 0;
    double v = (double)m; /* exact: m < 10^15 < 2^53 */
    v = scale < 0 ? v / POW10[-scale] : v * POW10[scale];
    *out = neg ? -v : v;
    return 1;
}

/* An Arrow string view: length, then the bytes inline (up to 12) or a 4-byte prefix,
 * buffer 0 and the offset of the bytes copied into data. `limit` is where the input
 * ends: short strings are read as whole words when that stays inside it. */
static inline void put_view(uint8_t *view, const uint8_t *s, int64_t len, const uint8_t *limit, uint8_t *data,
                            int64_t *used) {
    uint64_t lo, hi;
    if (len <= 12) {
        uint64_t w = 0;
        uint32_t w2 = 0;
        if (limit - s >= 12) {
            memcpy(&w, s, 8);
            memcpy(&w2, s + 8, 4);
            if (len < 8) {
                w &= len ? ~0ULL >> (64 - 8 * len) : 0;
                w2 = 0;
            } else {
                w2 &= len > 8 ? ~0U >> (32 - 8 * (len - 8)) : 0;
            }
        } else {
            uint8_t tmp[12] = {0};
            memcpy(tmp, s, (size_t)len);
            memcpy(&w, tmp, 8);
            memcpy(&w2, tmp + 8, 4);
        }
        lo = (uint64_t)len | (w << 32);
        hi = (w >> 32) | ((uint64_t)w2 << 32);
    } else {
        uint32_t prefix;
        memcpy(&prefix, s, 4);
        lo = (uint64_t)len | ((uint64_t)prefix << 32);
        hi = (uint64_t)(uint32_t)*used << 32; /* buffer 0, then the offset */
        memcpy(data + *used, s, (size_t)len);
        *used += len;
    }
    memcpy(view, &lo, 8);
    memcpy(view + 8, &hi, 8);
}

/*
 * Parse lines [starts[i], ends[i]) of buf. status[i] = 0 when the line was taken
 * (its row is written), 1 when it is left to the general decoder. Returns the
 * number of rows written, or -1 on a bad call.
 */
int64_t wb_parse_ndjson(const uint8_t *buf, const int64_t *starts, const int64_t *ends, int64_t n,
                        int32_t nfields, const char *const *names, const int32_t *name_lens,
                        const int32_t *kinds, int64_t max_record, uint8_t *status, void *const *values,
                        uint8_t *const *valid, uint8_t *const *data, int64_t *used) {
    if (nfields <= 0 || nfields > MAX_FIELDS || !c_locale) return -1;
    int64_t row = 0;
    const uint8_t *limit = n ? buf + ends[n - 1] : buf;
    int64_t at[MAX_FIELDS], saved[MAX_FIELDS]; /* bytes used in each data buffer */
    for (int f = 0; f < nfields; f++) at[f] = used[f];
    char number[MAX_NUMBER + 1];

    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = buf + starts[i], *e = buf + ends[i];
        status[i] = 1;
        if (e - p > max_record || e - p < 2 || *p != '{' || e[-1] != '}') continue;
        memcpy(saved, at, sizeof(int64_t) * (size_t)nfields);
        uint64_t seen = 0;
        int ok = 0, guess = 0;
        p = skip_ws(p + 1, e);
        if (p < e && *p == '}') {
            p++;
            ok = 1;
        }
        while (!ok) {
            /* key: usually the field after the previous one, checked in place */
            if (p >= e || *p != '"') break;
            const uint8_t *ks = p + 1, *kq;
            int f = guess;
            if (f < nfields && is_key(ks, e, names[f], name_lens[f])) {
                kq = ks + name_lens[f];
            } else {
                kq = scan_string(ks, e);
                if (!kq) break;
                int64_t klen = kq - ks;
                for (f = 0; f < nfields; f++)
                    if (name_lens[f] == klen && memcmp(names[f], ks, (size_t)klen) == 0) break;
            }
            guess = f + 1;
            if (f == nfields || (seen >> f) & 1) break; /* unknown or repeated key */
            seen |= (uint64_t)1 << f;
            p = skip_ws(kq + 1, e);
            if (p >= e || *p != ':') break;
            p = skip_ws(p + 1, e);
            if (p >= e) break;
            int kind = kinds[f];
            uint8_t c = *p;
            if (c == '"') {
                if (kind != K_STR && kind != K_TS) break;
                const uint8_t *s = p + 1, *q = scan_string(s, e);
                if (!q) break;
                put_view((uint8_t *)values[f] + 16 * row, s, q - s, limit, data[f], &at[f]);
                valid[f][row] = 1;
                p = q + 1;
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                /* JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
                const uint8_t *s = p;
                int integral = 1, digits = 0;
                if (*p == '-') p++;
                if (p >= e) break;
                if (*p == '0') {
                    p++;
                    digits = 1;
                    if (p < e && *p >= '0' && *p <= '9') break; /* leading zero */
                } else if (*p >= '1' && *p <= '9') {
                    while (p < e && *p >= '0' && *p <= '9') p++, digits++;
                } else {
                    break;
                }
                int bad = 0;
                if (p < e && *p == '.') {
                    integral = 0;
                    p++;
                    const uint8_t *d = p;
                    while (p < e && *p >= '0' && *p <= '9') p++;
                    bad |= p == d;
                }
                if (!bad && p < e && (*p == 'e' || *p == 'E')) {
                    integral = 0;
                    p++;
                    if (p < e && (*p == '+' || *p == '-')) p++;
                    const uint8_t *d = p;
                    while (p < e && *p >= '0' && *p <= '9') p++;
                    bad |= p == d;
                }
                int64_t len = p - s;
                if (bad || len > MAX_NUMBER) break;
                if (kind == K_FLOAT) {
                    double v;
                    if (!fast_double(s, p, &v)) {
                        memcpy(number, s, (size_t)len);
                        number[len] = 0;
                        char *end = NULL;
                        v = strtod_l(number, &end, c_locale);
                        if (end != number + len || !isfinite(v)) break;
                    }
                    ((double *)values[f])[row] = v;
                } else if (kind == K_INT) {
                    if (!integral || digits > 18) break;
                    const uint8_t *d = s;
                    int neg = *d == '-';
                    d += neg;
                    int64_t v = 0;
                    for (; d < p; d++) v = v * 10 + (*d - '0');
                    ((int64_t *)values[f])[row] = neg ? -v : v;
                } else if (kind == K_TS) {
                    /* kept as text: only a canonical integer reads back as written */
                    if (!integral || digits > 18 || (len == 2 && s[0] == '-' && s[1] == '0')) break;
                    put_view((uint8_t *)values[f] + 16 * row, s, len, limit, data[f], &at[f]);
                } else {
                    break; /* a number where a string belongs */
                }
                valid[f][row] = 1;
            } else if (c == 'n') {
                if (e - p < 4 || memcmp(p, "null", 4) != 0) break;
                p += 4;
                valid[f][row] = 0;
            } else {
                break; /* true, false, an object, an array or garbage */
            }
            p = skip_ws(p, e);
            if (p >= e) break;
            if (*p == ',') {
                p = skip_ws(p + 1, e);
                continue;
            }
            if (*p == '}') {
                p++;
                ok = 1;
            }
            break;
        }
        if (!ok || skip_ws(p, e) != e) {
            for (int f = 0; f < nfields; f++) at[f] = saved[f];
            continue;
        }
        for (int f = 0; f < nfields; f++) {
            if ((seen >> f) & 1) {
                if (valid[f][row]) continue;
            } else {
                valid[f][row] = 0; /* absent */
            }
            if (kinds[f] == K_STR || kinds[f] == K_TS)
                memset((uint8_t *)values[f] + 16 * row, 0, 16);
            else
                ((int64_t *)values[f])[row] = 0;
        }
        status[i] = 0;
        row++;
    }
    for (int f = 0; f < nfields; f++) used[f] = at[f];
    return row;
}

/*
 * Positions of the '\n' bytes of buf[0, n), written to out (capacity `cap`) in
 * ascending order. Returns how many there are; when that is more than `cap`, only
 * the first `cap` were written and the caller asks again with room for all.
 */
int64_t wb_newlines(const uint8_t *buf, int64_t n, int64_t *out, int64_t cap) {
    int64_t count = 0;
    const uint8_t *p = buf, *e = buf + n;
    while (p < e) {
        const uint8_t *q = memchr(p, '\n', (size_t)(e - p));
        if (!q) break;
        if (count < cap) out[count] = q - buf;
        count++;
        p = q + 1;
    }
    return count;
}
