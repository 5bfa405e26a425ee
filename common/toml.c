/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The TOML parser (see toml.h): one recursive-descent pass over the bytes,
 * building the tree of tagged values kept by toml-value.c. Tables keep their
 * entries in definition order, so toml_at()/toml_key_at() report keys as the
 * file wrote them.
 *
 * TOML's "define once" rules are enforced with per-table flags recording how
 * each table came to exist; the comment on those flags gives the rules.
 *
 * Input is untrusted (the fuzzer feeds it anything): every value's depth in
 * the tree is capped at TOML_MAX_DEPTH, so neither the parser nor toml_free()
 * can recurse deeper than that, and memory stays proportional to the input.
 */
#include <assert.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "path.h"
#include "utf8.h"
#include "toml-internal.h"

/* Deepest a value may sit below the root (an a.b.c key is depth 3). Real
 * configs use 3 or 4; this only stops hostile input exhausting the stack. */
#define TOML_MAX_DEPTH 64
/* toml_parse_file() refuses larger files: configs are a few KiB. */
#define TOML_MAX_FILE_SIZE (16u * 1024 * 1024)

struct parser {
	const char *buf;
	size_t len;
	size_t pos;
	const char *what;
	struct toml_value *root;
	struct toml_value *cur; /* table the last [header] selected */
	unsigned cur_depth;
	struct strata_error **ret_err;
};

/* A parsed key: its dotted parts and where each starts (for messages). */
struct key {
	char *part[TOML_MAX_DEPTH];
	size_t pos[TOML_MAX_DEPTH];
	size_t n;
};

static void key_done(struct key *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->part[i]);
}

struct strbuf {
	char *p;
	size_t n, cap;
};

static void strbuf_done(struct strbuf *b)
{
	free(b->p);
}

static int strbuf_add(struct strbuf *b, const char *s, size_t n)
{
	if (b->cap - b->n < n + 1) {
		size_t want = MAX(b->n + n + 1, (size_t)32);
		size_t cap = MAX(b->cap * 2, want);
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

static char *strbuf_steal(struct strbuf *b)
{
	if (!b->p)
		return strdup("");
	return TAKE_PTR(b->p);
}

/* ---- values ---- */

/* ---- errors ---- */

/* 1-based line and column of byte `at`; columns count code points, which is
 * what an editor shows for UTF-8 text. */
static void position(const struct parser *p, size_t at, size_t *ret_line, size_t *ret_col)
{
	size_t line = 1, col = 1;

	for (size_t i = 0; i < at && i < p->len; i++) {
		if (p->buf[i] == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)p->buf[i] & 0xC0) != 0x80) {
			col++;
		}
	}
	*ret_line = line;
	*ret_col = col;
}

static int fail(struct parser *p, size_t at, const char *fmt, ...) _printf_(3, 4);
static int fail(struct parser *p, size_t at, const char *fmt, ...)
{
	char reason[256];
	size_t line, col;
	va_list ap;

	if (!p->ret_err || *p->ret_err)
		return -EINVAL;
	va_start(ap, fmt);
	(void)vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	position(p, at, &line, &col);
	return strata_error_set(p->ret_err, -EINVAL, "%s: line %zu, column %zu: %s", p->what, line,
	                        col, reason);
}

/* A key as it may safely appear in a message: control characters (from
 * escapes) replaced, long keys cut at a character boundary. */
static const char *key_desc(const char *key, char buf[static 72])
{
	size_t n = 0;

	for (; key[n] && n < 64; n++)
		buf[n] = ((unsigned char)key[n] < 0x20 || key[n] == 0x7f) ? '?' : key[n];
	if (key[n]) {
		while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
			n--;
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* The character at `at` for "found X" in messages. */
static const char *char_desc(const struct parser *p, size_t at, char buf[static 16])
{
	unsigned char c;

	if (at >= p->len)
		return "end of input";
	c = (unsigned char)p->buf[at];
	if (c == '\n' || (c == '\r' && at + 1 < p->len && p->buf[at + 1] == '\n'))
		return "end of line";
	if (c >= 0x20 && c < 0x7f)
		(void)snprintf(buf, 16, "'%c'", c);
	else
		(void)snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

static const char *type_name(const struct toml_value *v)
{
	switch (v->type) {
	case TOML_STRING:
		return "a string";
	case TOML_INT:
		return "an integer";
	case TOML_FLOAT:
		return "a float";
	case TOML_BOOL:
		return "a boolean";
	case TOML_ARRAY:
		return (v->flags & ARRAY_OF_TABLES) ? "an array of tables" : "an array";
	case TOML_TABLE:
		if (v->flags & TABLE_INLINE)
			return "an inline table";
		return (v->flags & TABLE_DOTTED) ? "a table (by dotted keys)" : "a table";
	}
	return "a value";
}

static int fail_defined(struct parser *p, size_t at, const char *key, const struct toml_value *v)
{
	char kb[72];

	return fail(p, at, "'%s' is already defined as %s", key_desc(key, kb), type_name(v));
}

/* ---- lexing helpers ---- */

static bool at_end(const struct parser *p)
{
	return p->pos >= p->len;
}

static char peek(const struct parser *p)
{
	return at_end(p) ? '\0' : p->buf[p->pos];
}

/* Length of the newline at pos (1 for LF, 2 for CRLF), else 0. */
static size_t newline_at(const struct parser *p, size_t pos)
{
	if (pos < p->len && p->buf[pos] == '\n')
		return 1;
	if (pos + 1 < p->len && p->buf[pos] == '\r' && p->buf[pos + 1] == '\n')
		return 2;
	return 0;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->buf[p->pos] == ' ' || p->buf[p->pos] == '\t'))
		p->pos++;
}

/* Length of the well-formed UTF-8 sequence at s: 0 for overlong forms,
 * surrogates, values past U+10FFFF and truncated sequences. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* Check the text character at pos (in a string or comment) and return its
 * length in bytes: TOML allows tab but no other control character, and
 * requires valid UTF-8. */
static int text_char(struct parser *p, const char *where)
{
	unsigned char c = (unsigned char)p->buf[p->pos];
	size_t n;

	if ((c < 0x20 && c != '\t') || c == 0x7f)
		return fail(p, p->pos, "control character U+%04X is not allowed in %s", c, where);
	n = utf8_len((const unsigned char *)p->buf + p->pos, p->len - p->pos);
	if (n == 0)
		return fail(p, p->pos, "invalid UTF-8 in %s", where);
	return (int)n;
}

static int skip_comment(struct parser *p)
{
	p->pos++; /* '#' */
	while (!at_end(p) && !newline_at(p, p->pos)) {
		int n = text_char(p, "comments");

		if (n < 0)
			return n;
		p->pos += (size_t)n;
	}
	return 0;
}

/* Whitespace, newlines and comments: what may sit between array elements. */
static int skip_blank(struct parser *p)
{
	for (;;) {
		size_t nl;

		skip_ws(p);
		if (peek(p) == '#') {
			int r = skip_comment(p);

			if (r < 0)
				return r;
		}
		nl = newline_at(p, p->pos);
		if (nl == 0)
			return 0;
		p->pos += nl;
	}
}

/* After a key/value pair or a header only a comment may follow on the line. */
static int expect_eol(struct parser *p, const char *after)
{
	char cb[16];
	size_t nl;

	skip_ws(p);
	if (peek(p) == '#') {
		int r = skip_comment(p);

		if (r < 0)
			return r;
	}
	if (at_end(p))
		return 0;
	nl = newline_at(p, p->pos);
	if (nl == 0)
		return fail(p, p->pos, "expected end of line after %s, found %s", after,
		            char_desc(p, p->pos, cb));
	p->pos += nl;
	return 0;
}

/* ---- strings ---- */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* \uXXXX or \UXXXXXXXX at p->pos (the backslash), of ndigits hex digits. */
static int parse_unicode_escape(struct parser *p, size_t ndigits, struct strbuf *sb)
{
	size_t at = p->pos;
	uint32_t cp = 0;
	char out[4];

	for (size_t i = 0; i < ndigits; i++) {
		size_t q = p->pos + 2 + i;
		int d = q < p->len ? hex_value(p->buf[q]) : -1;

		if (d < 0)
			return fail(p, at, "\\%c escape needs %zu hex digits", p->buf[at + 1],
			            ndigits);
		cp = (cp << 4) | (uint32_t)d;
	}
	if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return fail(p, at, "escape \\%c%0*X is not a Unicode scalar value", p->buf[at + 1],
		            (int)ndigits, cp);
	/* TOML allows U+0000, but values are handed out as C strings where it
	 * would silently cut the string short (a path, a URL): refuse it. */
	if (cp == 0)
		return fail(p, at, "NUL characters (\\u0000) are not supported");
	p->pos += 2 + ndigits;
	return strbuf_add(sb, out, utf8_encode(cp, out));
}

/* The one-letter escapes, followed by what each stands for. */
static const char escapes[] = "btnfr\"\\"
                              "\b\t\n\f\r\"\\";
#define ESCAPES_LEN 7

/* A backslash escape in a basic string; p->pos is at the backslash. */
static int parse_escape(struct parser *p, bool multiline, struct strbuf *sb)
{
	size_t at = p->pos;
	char c = p->pos + 1 < p->len ? p->buf[p->pos + 1] : '\0';
	char cb[16];
	const char *e;

	if ((e = memchr(escapes, c, ESCAPES_LEN))) {
		p->pos += 2;
		return strbuf_add(sb, &escapes[e - escapes + ESCAPES_LEN], 1);
	}
	switch (c) {
	case 'u':
		return parse_unicode_escape(p, 4, sb);
	case 'U':
		return parse_unicode_escape(p, 8, sb);
	default:
		if (multiline) {
			/* A backslash ending a line trims it and all blank
			 * space up to the next visible character. */
			size_t q = at + 1;

			while (q < p->len && (p->buf[q] == ' ' || p->buf[q] == '\t'))
				q++;
			if (newline_at(p, q)) {
				p->pos = q;
				for (;;) {
					size_t nl = newline_at(p, p->pos);

					if (nl)
						p->pos += nl;
					else if (peek(p) == ' ' || peek(p) == '\t')
						p->pos++;
					else
						return 0;
				}
			}
		}
		return fail(p, at, "invalid escape sequence: backslash followed by %s",
		            char_desc(p, at + 1, cb));
	}
}

/*
 * A string at p->pos: "basic" (escapes) or 'literal', single- or multi-line.
 * Multi-line strings drop a newline right after the opening delimiter, keep
 * up to two quotes just before the closing one, and read CRLF as LF.
 */
static int parse_string(struct parser *p, bool allow_multiline, char **ret)
{
	_cleanup_(strbuf_done) struct strbuf sb = {};
	size_t open = p->pos;
	char q = p->buf[p->pos];
	bool basic = q == '"';
	bool multiline = p->pos + 2 < p->len && p->buf[p->pos + 1] == q && p->buf[p->pos + 2] == q;
	int r;

	if (multiline && !allow_multiline)
		return fail(p, open, "multi-line strings cannot be keys");
	if (multiline) {
		p->pos += 3;
		p->pos += newline_at(p, p->pos);
	} else {
		p->pos++;
	}

	for (;;) {
		size_t nl;
		char c;

		if (at_end(p))
			return fail(p, open, "unterminated string");
		c = p->buf[p->pos];
		if (c == q) {
			size_t run = 1;

			if (!multiline) {
				p->pos++;
				break;
			}
			while (p->pos + run < p->len && p->buf[p->pos + run] == q && run < 6)
				run++;
			if (run >= 3) {
				if (run > 5)
					return fail(p, p->pos + 5,
					            "too many quotes ending a string");
				r = strbuf_add(&sb, p->buf + p->pos, run - 3);
				if (r < 0)
					return r;
				p->pos += run;
				break;
			}
			r = strbuf_add(&sb, p->buf + p->pos, run);
			if (r < 0)
				return r;
			p->pos += run;
			continue;
		}
		if (basic && c == '\\') {
			r = parse_escape(p, multiline, &sb);
			if (r < 0)
				return r;
			continue;
		}
		nl = newline_at(p, p->pos);
		if (nl) {
			if (!multiline)
				return fail(p, open, "unterminated string");
			r = strbuf_add(&sb, "\n", 1);
			if (r < 0)
				return r;
			p->pos += nl;
			continue;
		}
		r = text_char(p, "strings");
		if (r < 0)
			return r;
		p->pos += (size_t)r;
		r = strbuf_add(&sb, p->buf + p->pos - r, (size_t)r);
		if (r < 0)
			return r;
	}

	*ret = strbuf_steal(&sb);
	return *ret ? 0 : -ENOMEM;
}

/* ---- keys ---- */

static bool is_bare_key_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* key = part ( ws '.' ws part )*, where part is bare, "basic" or 'literal'. */
static int parse_key(struct parser *p, struct key *k)
{
	char cb[16];
	int r;

	for (;;) {
		size_t start = p->pos;
		char c = peek(p);
		char *s;

		if (k->n >= TOML_MAX_DEPTH)
			return fail(p, start, "key has more than %d dotted parts", TOML_MAX_DEPTH);
		if (is_bare_key_char(c)) {
			while (is_bare_key_char(peek(p)))
				p->pos++;
			s = strndup(p->buf + start, p->pos - start);
			if (!s)
				return -ENOMEM;
		} else if (c == '"' || c == '\'') {
			r = parse_string(p, false, &s);
			if (r < 0)
				return r;
		} else {
			return fail(p, start, "expected a key, found %s", char_desc(p, start, cb));
		}
		k->part[k->n] = s;
		k->pos[k->n] = start;
		k->n++;

		skip_ws(p);
		if (peek(p) != '.')
			return 0;
		p->pos++;
		skip_ws(p);
	}
}

/* ---- numbers and other bare values ---- */

static unsigned digit_value(char c)
{
	int d = hex_value(c);

	return d < 0 ? 99 : (unsigned)d;
}

/* Digits of base with '_' only between two digits; returns the bytes used,
 * 0 if s does not start with a digit. */
static size_t scan_digits(const char *s, size_t n, unsigned base)
{
	size_t i = 0;

	if (n == 0 || digit_value(s[0]) >= base)
		return 0;
	while (i < n) {
		if (digit_value(s[i]) < base)
			i++;
		else if (s[i] == '_' && i + 1 < n && digit_value(s[i + 1]) < base)
			i++;
		else
			break;
	}
	return i;
}

static int make_int(struct parser *p, size_t at, const char *s, size_t n, unsigned base, bool neg,
                    struct toml_value **ret)
{
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;
	struct toml_value *val;

	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (s[i] == '_')
			continue;
		d = digit_value(s[i]);
		if (v > (limit - d) / base)
			return fail(p, at, "integer does not fit in 64 bits");
		v = v * base + d;
	}
	val = toml_value_new(TOML_INT, 0);
	if (!val)
		return -ENOMEM;
	if (neg && v > 0)
		val->i = -(int64_t)(v - 1) - 1;
	else
		val->i = (int64_t)v;
	*ret = val;
	return 0;
}

static int make_float(struct parser *p, size_t at, const char *s, size_t n, struct toml_value **ret)
{
	_cleanup_free_ char *copy = malloc(n + 1);
	struct toml_value *val;
	locale_t c_locale;
	size_t m = 0;
	double d;

	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (s[i] != '_')
			copy[m++] = s[i];
	copy[m] = '\0';

	/* strtod() follows LC_NUMERIC, and a program that called setlocale()
	 * might read "1.5" with a ',' decimal point; TOML is locale-free. */
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (!c_locale)
		return -ENOMEM;
	errno = 0;
	d = strtod_l(copy, NULL, c_locale);
	freelocale(c_locale);
	if (errno == ERANGE && isinf(d))
		return fail(p, at, "float is out of range");

	val = toml_value_new(TOML_FLOAT, 0);
	if (!val)
		return -ENOMEM;
	val->f = d;
	*ret = val;
	return 0;
}

static int parse_number(struct parser *p, size_t at, const char *s, size_t n,
                        struct toml_value **ret)
{
	bool neg = false, is_float = false;
	size_t i = 0, j, d;

	if (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-';
		i = 1;
	}
	if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0))
		return make_float(p, at, s, n, ret);

	if (i == 0 && n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
		unsigned base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;

		d = scan_digits(s + 2, n - 2, base);
		if (d == 0 || d != n - 2)
			return fail(p, at, "invalid number '%.*s'", (int)MIN(n, (size_t)40), s);
		return make_int(p, at, s + 2, d, base, false, ret);
	}

	d = scan_digits(s + i, n - i, 10);
	if (d == 0)
		return fail(p, at, "invalid number '%.*s'", (int)MIN(n, (size_t)40), s);
	if (s[i] == '0' && d > 1)
		return fail(p, at, "leading zeros are not allowed in '%.*s'",
		            (int)MIN(n, (size_t)40), s);
	j = i + d;
	if (j < n && s[j] == '.') {
		j++;
		d = scan_digits(s + j, n - j, 10);
		if (d == 0)
			return fail(p, at, "invalid number '%.*s'", (int)MIN(n, (size_t)40), s);
		j += d;
		is_float = true;
	}
	if (j < n && (s[j] == 'e' || s[j] == 'E')) {
		j++;
		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		d = scan_digits(s + j, n - j, 10);
		if (d == 0)
			return fail(p, at, "invalid number '%.*s'", (int)MIN(n, (size_t)40), s);
		j += d;
		is_float = true;
	}
	if (j != n)
		return fail(p, at, "invalid number '%.*s'", (int)MIN(n, (size_t)40), s);
	if (is_float)
		return make_float(p, at, s, n, ret);
	return make_int(p, at, s + i, n - i, 10, neg, ret);
}

static bool is_bare_value_char(char c)
{
	return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1979-05-27..., 07:32:00... */
static bool looks_like_datetime(const char *s, size_t n)
{
	if (n >= 5 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
	    s[4] == '-')
		return true;
	return n >= 3 && is_digit(s[0]) && is_digit(s[1]) && s[2] == ':';
}

/* Booleans, numbers, and dates (refused): an unquoted run of characters. */
static int parse_bare_value(struct parser *p, struct toml_value **ret)
{
	size_t start = p->pos, n;
	const char *s = p->buf + start;
	struct toml_value *v;
	char cb[16];

	while (is_bare_value_char(peek(p)))
		p->pos++;
	n = p->pos - start;
	if (n == 0)
		return fail(p, start, "expected a value, found %s", char_desc(p, start, cb));

	if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0)) {
		v = toml_value_new(TOML_BOOL, 0);
		if (!v)
			return -ENOMEM;
		v->b = n == 4;
		*ret = v;
		return 0;
	}
	if (looks_like_datetime(s, n))
		return fail(p, start, "dates and times are not supported");
	if (is_digit(s[0]) || s[0] == '+' || s[0] == '-' || (n == 3 && memcmp(s, "inf", 3) == 0) ||
	    (n == 3 && memcmp(s, "nan", 3) == 0))
		return parse_number(p, start, s, n, ret);
	return fail(p, start, "invalid value '%.*s' (strings must be quoted)",
	            (int)MIN(n, (size_t)40), s);
}

/* ---- compound values ---- */

static int parse_value(struct parser *p, unsigned depth, struct toml_value **ret);
static int parse_keyval(struct parser *p, struct toml_value *table, unsigned depth);

static int parse_array(struct parser *p, unsigned depth, struct toml_value **ret)
{
	_cleanup_toml_ struct toml_value *a = toml_value_new(TOML_ARRAY, 0);
	size_t open = p->pos;
	char cb[16];
	int r;

	if (!a)
		return -ENOMEM;
	p->pos++; /* '[' */
	for (;;) {
		_cleanup_toml_ struct toml_value *item = NULL;

		r = skip_blank(p);
		if (r < 0)
			return r;
		if (at_end(p))
			return fail(p, open, "unterminated array");
		if (peek(p) == ']')
			break;

		r = parse_value(p, depth + 1, &item);
		if (r < 0)
			return r;
		r = toml_array_add(a, item);
		if (r < 0)
			return r;
		TAKE_PTR(item);

		r = skip_blank(p);
		if (r < 0)
			return r;
		if (at_end(p))
			return fail(p, open, "unterminated array");
		if (peek(p) == ']')
			break;
		if (peek(p) != ',')
			return fail(p, p->pos, "expected ',' or ']' in array, found %s",
			            char_desc(p, p->pos, cb));
		p->pos++;
	}
	p->pos++; /* ']' */
	*ret = TAKE_PTR(a);
	return 0;
}

/* { k = v, ... } on one line, no trailing comma (TOML 1.0). */
static int parse_inline_table(struct parser *p, unsigned depth, struct toml_value **ret)
{
	_cleanup_toml_ struct toml_value *t = toml_value_new(TOML_TABLE, 0);
	size_t open = p->pos, comma;
	char cb[16];
	int r;

	if (!t)
		return -ENOMEM;
	p->pos++; /* '{' */
	skip_ws(p);
	if (peek(p) != '}') {
		for (;;) {
			r = parse_keyval(p, t, depth);
			if (r < 0)
				return r;
			skip_ws(p);
			if (at_end(p))
				return fail(p, open, "unterminated inline table");
			if (peek(p) == '}')
				break;
			if (newline_at(p, p->pos))
				return fail(p, p->pos, "newlines are not allowed in inline tables");
			if (peek(p) != ',')
				return fail(p, p->pos,
				            "expected ',' or '}' in inline table, found %s",
				            char_desc(p, p->pos, cb));
			comma = p->pos++;
			skip_ws(p);
			if (peek(p) == '}')
				return fail(p, comma,
				            "trailing comma is not allowed in inline tables");
		}
	}
	p->pos++; /* '}' */
	t->flags |= TABLE_INLINE;
	*ret = TAKE_PTR(t);
	return 0;
}

/* A value sitting `depth` levels below the root. */
static int parse_value(struct parser *p, unsigned depth, struct toml_value **ret)
{
	struct toml_value *v;
	char *s = NULL;
	int r;

	if (depth > TOML_MAX_DEPTH)
		return fail(p, p->pos, "values nested deeper than %d levels", TOML_MAX_DEPTH);
	switch (peek(p)) {
	case '"':
	case '\'':
		r = parse_string(p, true, &s);
		if (r < 0)
			return r;
		v = toml_value_new(TOML_STRING, 0);
		if (!v) {
			free(s);
			return -ENOMEM;
		}
		v->str = s;
		*ret = v;
		return 0;
	case '[':
		return parse_array(p, depth, ret);
	case '{':
		return parse_inline_table(p, depth, ret);
	default:
		return parse_bare_value(p, ret);
	}
}

/* key = value into table, which sits `depth` levels below the root. */
static int parse_keyval(struct parser *p, struct toml_value *table, unsigned depth)
{
	_cleanup_(key_done) struct key k = {};
	_cleanup_toml_ struct toml_value *v = NULL;
	struct toml_value *t = table, *old;
	char kb[72], cb[16];
	size_t last;
	int r;

	r = parse_key(p, &k);
	if (r < 0)
		return r;
	last = k.n - 1;

	for (size_t i = 0; i < last; i++) {
		struct toml_value *c = toml_table_find(t, k.part[i]);

		if (!c) {
			r = toml_table_add_child(t, &k.part[i], TOML_TABLE, TABLE_DOTTED, &c);
			if (r < 0)
				return r;
		} else if (c->type != TOML_TABLE || !(c->flags & TABLE_DOTTED) ||
		           (c->flags & TABLE_INLINE)) {
			return fail_defined(p, k.pos[i], k.part[i], c);
		}
		t = c;
	}
	old = toml_table_find(t, k.part[last]);
	if (old)
		return fail(p, k.pos[last], "duplicate key '%s'", key_desc(k.part[last], kb));

	if (peek(p) != '=')
		return fail(p, p->pos, "expected '=' after key, found %s",
		            char_desc(p, p->pos, cb));
	p->pos++;
	skip_ws(p);
	r = parse_value(p, depth + (unsigned)k.n, &v);
	if (r < 0)
		return r;
	r = toml_table_add(t, k.part[last], v);
	if (r < 0)
		return r;
	k.part[last] = NULL;
	TAKE_PTR(v);
	return 0;
}

/* [a.b.c] or [[a.b.c]]: select (creating as needed) the table that the
 * following key/value pairs go into. */
static int parse_header(struct parser *p)
{
	_cleanup_(key_done) struct key k = {};
	struct toml_value *t = p->root, *v;
	unsigned depth = 0;
	bool aot;
	size_t last;
	int r;

	p->pos++; /* '[' */
	aot = peek(p) == '[';
	if (aot)
		p->pos++;
	skip_ws(p);
	r = parse_key(p, &k);
	if (r < 0)
		return r;
	if (peek(p) != ']' || (aot && (p->pos + 1 >= p->len || p->buf[p->pos + 1] != ']')))
		return fail(p, p->pos, "expected '%s' to close the table header", aot ? "]]" : "]");
	p->pos += aot ? 2 : 1;
	last = k.n - 1;

	for (size_t i = 0; i < last; i++) {
		struct toml_value *c = toml_table_find(t, k.part[i]);

		if (!c) {
			r = toml_table_add_child(t, &k.part[i], TOML_TABLE, TABLE_IMPLICIT, &c);
			if (r < 0)
				return r;
		} else if (c->type == TOML_ARRAY && (c->flags & ARRAY_OF_TABLES)) {
			/* [a.b] after [[a]] belongs to a's latest element. */
			c = c->arr.items[c->arr.n - 1];
			depth++;
		} else if (c->type != TOML_TABLE || (c->flags & TABLE_INLINE)) {
			return fail_defined(p, k.pos[i], k.part[i], c);
		}
		t = c;
		depth++;
	}
	depth++;
	if (depth + (aot ? 1 : 0) > TOML_MAX_DEPTH)
		return fail(p, k.pos[0], "tables nested deeper than %d levels", TOML_MAX_DEPTH);

	v = toml_table_find(t, k.part[last]);
	if (!aot) {
		if (!v) {
			r = toml_table_add_child(t, &k.part[last], TOML_TABLE, TABLE_DEFINED, &v);
			if (r < 0)
				return r;
		} else if (v->type == TOML_TABLE && v->flags == TABLE_IMPLICIT) {
			v->flags = TABLE_DEFINED;
		} else {
			return fail_defined(p, k.pos[last], k.part[last], v);
		}
	} else {
		_cleanup_toml_ struct toml_value *elem = toml_value_new(TOML_TABLE, TABLE_DEFINED);

		if (!elem)
			return -ENOMEM;
		if (!v) {
			r = toml_table_add_child(t, &k.part[last], TOML_ARRAY, ARRAY_OF_TABLES, &v);
			if (r < 0)
				return r;
		} else if (v->type != TOML_ARRAY || !(v->flags & ARRAY_OF_TABLES)) {
			return fail_defined(p, k.pos[last], k.part[last], v);
		}
		r = toml_array_add(v, elem);
		if (r < 0)
			return r;
		v = TAKE_PTR(elem);
		depth++;
	}
	p->cur = v;
	p->cur_depth = depth;
	return 0;
}

static int parse_document(struct parser *p)
{
	int r;

	/* Editors on Windows like to start files with a byte-order mark. */
	if (p->len >= 3 && memcmp(p->buf, "\xEF\xBB\xBF", 3) == 0) {
		p->buf += 3;
		p->len -= 3;
	}

	for (;;) {
		size_t nl;

		skip_ws(p);
		if (at_end(p))
			return 0;
		if (peek(p) == '#') {
			r = skip_comment(p);
			if (r < 0)
				return r;
			continue;
		}
		nl = newline_at(p, p->pos);
		if (nl) {
			p->pos += nl;
			continue;
		}
		if (peek(p) == '[') {
			r = parse_header(p);
			if (r < 0)
				return r;
			r = expect_eol(p, "table header");
		} else {
			r = parse_keyval(p, p->cur, p->cur_depth);
			if (r < 0)
				return r;
			r = expect_eol(p, "value");
		}
		if (r < 0)
			return r;
	}
}

int toml_parse(const char *buf, size_t len, const char *what, struct toml_value **ret,
               struct strata_error **ret_err)
{
	_cleanup_toml_ struct toml_value *root = toml_value_new(TOML_TABLE, 0);
	struct parser p = {
	        .buf = buf,
	        .len = len,
	        .what = what ? what : "toml",
	        .root = root,
	        .cur = root,
	        .ret_err = ret_err,
	};
	int r;

	if (!root)
		return strata_error_set(ret_err, -ENOMEM, "%s: out of memory", p.what);
	if (!buf && len > 0)
		return strata_error_set(ret_err, -EINVAL, "%s: no input buffer", p.what);

	r = parse_document(&p);
	if (r < 0)
		/* Syntax errors carry their own message; this only names
		 * failures like -ENOMEM that had none. */
		return strata_error_set_errno(ret_err, r, "%s", p.what);
	*ret = TAKE_PTR(root);
	return 0;
}

int toml_parse_file(const char *path, struct toml_value **ret, struct strata_error **ret_err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = path_read_file_at(AT_FDCWD, path, TOML_MAX_FILE_SIZE, &buf, &len);
	if (r == -EFBIG)
		return strata_error_set(ret_err, r, "read \"%s\": larger than %u MiB", path,
		                        TOML_MAX_FILE_SIZE >> 20);
	if (r < 0)
		return strata_error_set_errno(ret_err, r, "read \"%s\"", path);
	return toml_parse(buf, len, path, ret, ret_err);
}
