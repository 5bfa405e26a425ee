/* SPDX-License-Identifier: Apache-2.0 */
/*
 * containerd's filter expressions (see filter.h): a scanner and a recursive
 * descent parser that accept exactly what containerd/filters accepts, and a
 * matcher over a field-lookup callback.
 *
 * Grammar corners kept from containerd on purpose, because clients built
 * against it rely on them:
 *  - whitespace is skipped before a token, but not after a value: "a==b ,c"
 *    and a trailing blank are errors ("unexpected input");
 *  - a value may contain '.', '=' and any other graphic character; only ','
 *    and whitespace end it;
 *  - quotes are '"' everywhere, and also '/' or '|' for the value of "~=";
 *    escapes follow Go string syntax;
 *  - "" alone matches everything.
 * One deliberate difference: containerd compiles a "~=" regexp when first
 * matching and silently matches nothing when it is invalid; here it is
 * compiled while parsing (POSIX extended, with a few RE2 spellings
 * translated) so a bad regexp is an InvalidArgument the client can see.
 */
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "filter.h"
#include "utf8.h"

enum op {
	OP_PRESENT,
	OP_EQUAL,
	OP_NOT_EQUAL,
	OP_MATCHES,
};

struct selector {
	char **fieldpath;
	size_t n_fieldpath;
	enum op op;
	char *value;
	bool have_re;
	regex_t re;
};

/* A conjunction of selectors; zero selectors match everything. */
struct conjunction {
	struct selector *sel;
	size_t n_sel;
};

struct strata_filter {
	struct conjunction *alt; /* OR'd */
	size_t n_alt;
};

/* --- scanner ------------------------------------------------------------ */

enum token {
	TOK_EOF = -1,
	TOK_QUOTED = -2,
	TOK_VALUE = -3,
	TOK_FIELD = -4,
	TOK_SEPARATOR = -5,
	TOK_OPERATOR = -6,
	TOK_ILLEGAL = -7,
};

struct scanner {
	const char *input;
	size_t len;
	size_t pos;  /* start of the last rune read */
	size_t ppos; /* end of the last rune read */
	bool value;  /* an operator was just read: the next bare run is a value */
	const char *err;
};

/* Decode one UTF-8 rune; returns its width, 0 on an invalid sequence. */
static size_t decode_rune(const unsigned char *s, size_t len, uint32_t *ret)
{
	uint32_t r, min;
	size_t w, i;

	if (s[0] < 0x80) {
		*ret = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		w = 2, r = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		w = 3, r = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		w = 4, r = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len < w)
		return 0;
	for (i = 1; i < w; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		r = (r << 6) | (s[i] & 0x3f);
	}
	if (r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
		return 0;
	*ret = r;
	return w;
}

/* Go's unicode.IsSpace. */
static bool is_space(int32_t r)
{
	switch (r) {
	case '\t':
	case '\n':
	case '\v':
	case '\f':
	case '\r':
	case ' ':
	case 0x85:
	case 0xa0:
	case 0x1680:
	case 0x2028:
	case 0x2029:
	case 0x202f:
	case 0x205f:
	case 0x3000:
		return true;
	default:
		return r >= 0x2000 && r <= 0x200a;
	}
}

static bool is_field_rune(int32_t r)
{
	return r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') ||
	       (r >= '0' && r <= '9');
}

static bool is_operator_rune(int32_t r)
{
	return r == '=' || r == '!' || r == '~';
}

static bool is_quote_rune(int32_t r)
{
	return r == '/' || r == '|' || r == '"';
}

static bool is_separator_rune(int32_t r)
{
	return r == ',' || r == '.';
}

/* Graphic (letters, marks, numbers, punctuation, symbols) and not a space
 * or ','. Non-ASCII runes outside the C1 controls count as graphic, which is
 * what Go answers for every assigned code point a filter would carry. */
static bool is_value_rune(int32_t r)
{
	if (r < 0 || r == ',' || is_space(r))
		return false;
	if (r < 0x80)
		return r > 0x20 && r < 0x7f;
	return r >= 0xa0;
}

static void scanner_error(struct scanner *s, const char *msg)
{
	if (!s->err)
		s->err = msg;
}

static int32_t scanner_next(struct scanner *s)
{
	uint32_t r;
	size_t w;

	if (s->ppos >= s->len) {
		s->pos = s->len;
		return TOK_EOF;
	}
	s->pos = s->ppos;
	w = decode_rune((const unsigned char *)s->input + s->ppos, s->len - s->ppos, &r);
	if (w == 0) {
		s->ppos++;
		scanner_error(s, "rune error");
		return TOK_ILLEGAL;
	}
	s->ppos += w;
	return (int32_t)r;
}

static int32_t scanner_peek(struct scanner *s)
{
	size_t pos = s->pos, ppos = s->ppos;
	int32_t ch = scanner_next(s);

	s->pos = pos;
	s->ppos = ppos;
	return ch;
}

/* Find the closing quote; escapes are validated later by unquote(). */
static bool scan_quoted(struct scanner *s, int32_t quote)
{
	int32_t ch = scanner_next(s);

	while (ch != quote) {
		if (ch == '\n' || ch < 0) {
			scanner_error(s, "quoted literal not terminated");
			return false;
		}
		if (ch == '\\') {
			ch = scanner_next(s);
			if (ch == '\n' || ch < 0) {
				scanner_error(s, "quoted literal not terminated");
				return false;
			}
		}
		ch = scanner_next(s);
	}
	return true;
}

/* Returns a token; *ret_start and *ret_end bound its text in the input. */
static int scanner_scan(struct scanner *s, size_t *ret_start, size_t *ret_end)
{
	int32_t ch;

	for (;;) {
		ch = scanner_next(s);
		if (ch >= 0 && is_space(ch))
			continue;
		break;
	}
	*ret_start = s->pos;
	*ret_end = s->pos;
	if (ch == TOK_EOF || ch == TOK_ILLEGAL)
		return ch;

	if (is_quote_rune(ch)) {
		bool ok = scan_quoted(s, ch);
		*ret_end = s->ppos;
		return ok ? TOK_QUOTED : TOK_ILLEGAL;
	}
	if (is_separator_rune(ch)) {
		s->value = false;
		*ret_end = s->ppos;
		return TOK_SEPARATOR;
	}
	if (is_operator_rune(ch)) {
		while (is_operator_rune(scanner_peek(s)))
			(void)scanner_next(s);
		s->value = true;
		*ret_end = s->ppos;
		return TOK_OPERATOR;
	}
	if (s->value) {
		while (is_value_rune(scanner_peek(s)))
			(void)scanner_next(s);
		s->value = false;
		*ret_end = s->ppos;
		return TOK_VALUE;
	}
	if (is_field_rune(ch)) {
		while (is_field_rune(scanner_peek(s)))
			(void)scanner_next(s);
		*ret_end = s->ppos;
		return TOK_FIELD;
	}
	/* Any other rune is its own (unexpected) token. */
	return ch;
}

/* --- unquoting (Go string syntax; '/' and '|' act like '"') ------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..len) includes both delimiters. Returns a malloc'd string or NULL with
 * *ret_msg set. */
static char *unquote(const char *s, size_t len, const char **ret_msg)
{
	_cleanup_free_ char *buf = NULL;
	char quote;
	size_t i, o = 0;

	*ret_msg = "quote syntax error";
	if (len < 2 || s[0] != s[len - 1])
		return NULL;
	quote = s[0];
	s++;
	len -= 2;

	/* Each escape shrinks or keeps its length, except \u and \U which
	 * expand at most to 4 bytes from 6 or 10. */
	buf = malloc(len + 1);
	if (!buf) {
		*ret_msg = "out of memory";
		return NULL;
	}
	for (i = 0; i < len;) {
		char c = s[i];
		unsigned v = 0;
		int n = 0, j;

		if (c == quote || c == '\n')
			return NULL;
		if (c != '\\') {
			buf[o++] = c;
			i++;
			continue;
		}
		if (i + 1 >= len)
			return NULL;
		c = s[i + 1];
		i += 2;
		switch (c) {
		case 'a':
			buf[o++] = '\a';
			break;
		case 'b':
			buf[o++] = '\b';
			break;
		case 'f':
			buf[o++] = '\f';
			break;
		case 'n':
			buf[o++] = '\n';
			break;
		case 'r':
			buf[o++] = '\r';
			break;
		case 't':
			buf[o++] = '\t';
			break;
		case 'v':
			buf[o++] = '\v';
			break;
		case '\\':
			buf[o++] = '\\';
			break;
		case 'x':
		case 'u':
		case 'U':
			n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
			if (len - i < (size_t)n)
				return NULL;
			for (j = 0; j < n; j++) {
				int x = hexval(s[i + j]);
				if (x < 0)
					return NULL;
				v = (v << 4) | (unsigned)x;
			}
			i += n;
			if (c == 'x') {
				buf[o++] = (char)v;
				break;
			}
			if (v > 0x10ffff)
				return NULL;
			o += utf8_encode(v, buf + o);
			break;
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
			v = (unsigned)(c - '0');
			if (len - i < 2)
				return NULL;
			for (j = 0; j < 2; j++) {
				if (s[i + j] < '0' || s[i + j] > '7')
					return NULL;
				v = (v << 3) | (unsigned)(s[i + j] - '0');
			}
			i += 2;
			if (v > 255)
				return NULL;
			buf[o++] = (char)v;
			break;
		case '\'':
		case '"':
		case '|':
		case '/':
			if (c != quote)
				return NULL;
			buf[o++] = c;
			break;
		default:
			return NULL;
		}
	}
	buf[o] = '\0';
	/* Go strings may hold NUL; C strings cannot. */
	if (memchr(buf, '\0', o)) {
		*ret_msg = "NUL character not supported";
		return NULL;
	}
	return TAKE_PTR(buf);
}

/* --- regexp -------------------------------------------------------------- */

/* Translate one RE2 bracket expression starting at p[0] == '[' into POSIX
 * form at *o: in POSIX a backslash is literal inside brackets and ']' / '-'
 * are literal only first / last, so escaped members are moved there.
 * Returns the input length consumed, 0 when the bracket is not closed. */
static size_t translate_bracket(const char *p, char *out, size_t *o)
{
	bool neg = false, rbracket = false, dash = false, caret = false;
	size_t i = 1, n = 0;
	char body[1024];

	if (p[i] == '^') {
		neg = true;
		i++;
	}
	if (p[i] == ']') {
		rbracket = true;
		i++;
	}
	for (;; i++) {
		const char *rep = NULL;
		char c = p[i];

		if (c == '\0' || n + 16 > sizeof(body))
			return 0;
		if (c == ']')
			break;
		if (c == '[' && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
			const char *end = strchr(p + i + 2, p[i + 1]);
			while (end && end[1] != ']')
				end = strchr(end + 1, p[i + 1]);
			if (!end || (size_t)(end + 2 - (p + i)) + n + 16 > sizeof(body))
				return 0;
			memcpy(body + n, p + i, (size_t)(end + 2 - (p + i)));
			n += (size_t)(end + 2 - (p + i));
			i = (size_t)(end + 1 - p);
			continue;
		}
		if (c != '\\') {
			body[n++] = c;
			continue;
		}
		c = p[++i];
		switch (c) {
		case '\0':
			return 0;
		case 'd':
			rep = "0-9";
			break;
		case 'w':
			rep = "[:alnum:]_";
			break;
		case 's':
			rep = "[:space:]";
			break;
		case 'n':
			rep = "\n";
			break;
		case 't':
			rep = "\t";
			break;
		case ']':
			rbracket = true;
			break;
		case '-':
			dash = true;
			break;
		case '^':
			caret = true;
			break;
		default:
			body[n++] = c;
			break;
		}
		if (rep) {
			memcpy(body + n, rep, strlen(rep));
			n += strlen(rep);
		}
	}
	out[(*o)++] = '[';
	if (neg)
		out[(*o)++] = '^';
	if (rbracket)
		out[(*o)++] = ']';
	memcpy(out + *o, body, n);
	*o += n;
	if (caret) {
		/* '^' must not come first: "[^]" would negate */
		if (n == 0 && !rbracket && !neg) {
			memcpy(out + *o, "[.^.]", 5);
			*o += 5;
		} else {
			out[(*o)++] = '^';
		}
	}
	if (dash)
		out[(*o)++] = '-';
	out[(*o)++] = ']';
	return i + 1;
}

/* Translate the RE2 spellings POSIX ERE lacks: a leading "(?i)" becomes
 * REG_ICASE, \d and \D become [0-9] and [^0-9], and bracket expressions get
 * RE2's escapes. glibc already understands \w \W \s \S \b \B outside
 * brackets. */
static int compile_regexp(const char *pattern, regex_t *re)
{
	_cleanup_free_ char *buf = NULL;
	int cflags = REG_EXTENDED | REG_NOSUB;
	size_t i, o = 0, len;

	if (strncmp(pattern, "(?i)", 4) == 0) {
		cflags |= REG_ICASE;
		pattern += 4;
	}
	len = strlen(pattern);
	/* The largest growth is "\w" in a bracket: 2 -> 10 bytes. */
	buf = malloc(len * 5 + 16);
	if (!buf)
		return REG_ESPACE;
	for (i = 0; i < len; i++) {
		char c = pattern[i];

		if (c == '\\' && i + 1 < len) {
			if (pattern[i + 1] == 'd' || pattern[i + 1] == 'D') {
				const char *rep = pattern[i + 1] == 'd' ? "[0-9]" : "[^0-9]";
				memcpy(buf + o, rep, strlen(rep));
				o += strlen(rep);
				i++;
				continue;
			}
			buf[o++] = c;
			buf[o++] = pattern[++i];
			continue;
		}
		if (c == '[') {
			size_t used = translate_bracket(pattern + i, buf, &o);
			if (used > 0) {
				i += used - 1;
				continue;
			}
		}
		buf[o++] = c;
	}
	buf[o] = '\0';
	return regcomp(re, buf, cflags);
}

/* --- parser -------------------------------------------------------------- */

struct parser {
	const char *input;
	struct scanner sc;
	struct strata_error **ret_err;
};

static int parser_error(struct parser *p, size_t pos, const char *msg)
{
	return strata_error_set(p->ret_err, -EINVAL, "filter \"%s\": position %zu: %s", p->input,
	                        pos, msg);
}

static void selector_done(struct selector *s)
{
	for (size_t i = 0; i < s->n_fieldpath; i++)
		free(s->fieldpath[i]);
	free(s->fieldpath);
	free(s->value);
	if (s->have_re)
		regfree(&s->re);
	*s = (struct selector){0};
}

static int parse_field(struct parser *p, char **ret)
{
	size_t start, end;
	const char *msg;
	int tok = scanner_scan(&p->sc, &start, &end);
	char *f;

	switch (tok) {
	case TOK_FIELD:
		f = strndup(p->input + start, end - start);
		if (!f)
			return -ENOMEM;
		*ret = f;
		return 0;
	case TOK_QUOTED:
		if (p->input[start] != '"')
			return parser_error(p, start, "invalid quote encountered");
		f = unquote(p->input + start, end - start, &msg);
		if (!f)
			return parser_error(p, start, msg);
		*ret = f;
		return 0;
	case TOK_ILLEGAL:
		return parser_error(p, start, p->sc.err ? p->sc.err : "illegal input");
	default:
		return parser_error(p, start, "expected field or quoted");
	}
}

static int push_field(struct selector *s, char *f)
{
	char **a = realloc(s->fieldpath, (s->n_fieldpath + 1) * sizeof(char *));
	if (!a) {
		free(f);
		return -ENOMEM;
	}
	s->fieldpath = a;
	s->fieldpath[s->n_fieldpath++] = f;
	return 0;
}

static int parse_fieldpath(struct parser *p, struct selector *s)
{
	char *f = NULL;
	size_t start, end;
	int r;

	r = parse_field(p, &f);
	if (r < 0)
		return r;
	r = push_field(s, f);
	if (r < 0)
		return r;
	while (scanner_peek(&p->sc) == '.') {
		(void)scanner_scan(&p->sc, &start, &end);
		r = parse_field(p, &f);
		if (r < 0)
			return r;
		r = push_field(s, f);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_operator(struct parser *p, enum op *ret)
{
	size_t start, end;
	int tok = scanner_scan(&p->sc, &start, &end);

	if (tok == TOK_OPERATOR) {
		size_t l = end - start;
		const char *o = p->input + start;
		if (l == 2 && o[0] == '=' && o[1] == '=')
			*ret = OP_EQUAL;
		else if (l == 2 && o[0] == '!' && o[1] == '=')
			*ret = OP_NOT_EQUAL;
		else if (l == 2 && o[0] == '~' && o[1] == '=')
			*ret = OP_MATCHES;
		else
			return strata_error_set(p->ret_err, -EINVAL,
			                        "filter \"%s\": position %zu: unsupported operator "
			                        "\"%.*s\"",
			                        p->input, start, (int)l, o);
		return 0;
	}
	if (tok == TOK_ILLEGAL)
		return parser_error(p, start, p->sc.err ? p->sc.err : "illegal input");
	return parser_error(p, start, "expected an operator (\"==\"|\"!=\"|\"~=\")");
}

static int parse_value(struct parser *p, bool allow_alt_quotes, char **ret, size_t *ret_pos)
{
	size_t start, end;
	const char *msg;
	int tok = scanner_scan(&p->sc, &start, &end);
	char *v;

	*ret_pos = start;
	switch (tok) {
	case TOK_VALUE:
	case TOK_FIELD:
		v = strndup(p->input + start, end - start);
		if (!v)
			return -ENOMEM;
		*ret = v;
		return 0;
	case TOK_QUOTED:
		if (!allow_alt_quotes && p->input[start] != '"')
			return parser_error(p, start, "invalid quote encountered");
		v = unquote(p->input + start, end - start, &msg);
		if (!v)
			return parser_error(p, start, msg);
		*ret = v;
		return 0;
	case TOK_ILLEGAL:
		return parser_error(p, start, p->sc.err ? p->sc.err : "illegal input");
	default:
		return parser_error(p, start, "expected value or quoted");
	}
}

static int parse_selector(struct parser *p, struct selector *s)
{
	int32_t next;
	size_t vpos;
	int r;

	r = parse_fieldpath(p, s);
	if (r < 0)
		return r;

	next = scanner_peek(&p->sc);
	if (next == ',' || next == TOK_EOF) {
		s->op = OP_PRESENT;
		return 0;
	}
	r = parse_operator(p, &s->op);
	if (r < 0)
		return r;
	r = parse_value(p, s->op == OP_MATCHES, &s->value, &vpos);
	if (r < 0)
		return r;
	if (s->op == OP_MATCHES) {
		r = compile_regexp(s->value, &s->re);
		if (r != 0) {
			char msg[256];
			(void)regerror(r, &s->re, msg, sizeof(msg));
			return strata_error_set(
			        p->ret_err, -EINVAL,
			        "filter \"%s\": position %zu: bad regexp \"%s\": %s", p->input,
			        vpos, s->value, msg);
		}
		s->have_re = true;
	}
	return 0;
}

static int parse_one(const char *input, struct conjunction *ret, struct strata_error **ret_err)
{
	struct parser p = {.input = input, .ret_err = ret_err};
	struct conjunction c = {0};
	int32_t next;
	int r;

	*ret = (struct conjunction){0};
	if (input[0] == '\0')
		return 0;
	p.sc = (struct scanner){.input = input, .len = strlen(input)};

	for (;;) {
		struct selector *a = realloc(c.sel, (c.n_sel + 1) * sizeof(*a));
		if (!a) {
			r = -ENOMEM;
			goto fail;
		}
		c.sel = a;
		c.sel[c.n_sel] = (struct selector){0};
		r = parse_selector(&p, &c.sel[c.n_sel]);
		c.n_sel++;
		if (r < 0)
			goto fail;

		next = scanner_peek(&p.sc);
		if (next == TOK_EOF)
			break;
		if (next != ',') {
			/* ppos: where the unexpected rune starts, as containerd reports */
			r = parser_error(&p, p.sc.ppos, "unexpected input");
			goto fail;
		}
		size_t start, end;
		(void)scanner_scan(&p.sc, &start, &end);
	}
	*ret = c;
	return 0;
fail:
	for (size_t i = 0; i < c.n_sel; i++)
		selector_done(&c.sel[i]);
	free(c.sel);
	if (r == -ENOMEM)
		(void)strata_error_set(ret_err, r, "filter \"%s\": out of memory", input);
	return r;
}

struct strata_filter *strata_filter_free(struct strata_filter *f)
{
	if (!f)
		return NULL;
	for (size_t i = 0; i < f->n_alt; i++) {
		for (size_t j = 0; j < f->alt[i].n_sel; j++)
			selector_done(&f->alt[i].sel[j]);
		free(f->alt[i].sel);
	}
	free(f->alt);
	free(f);
	return NULL;
}

int strata_filter_parse(const char *const filters[], size_t n, struct strata_filter **ret,
                        struct strata_error **ret_err)
{
	_cleanup_(strata_filter_freep) struct strata_filter *f = NULL;
	int r;

	f = calloc(1, sizeof(*f));
	if (!f)
		return strata_error_set(ret_err, -ENOMEM, "parse filters: out of memory");
	if (n > 0) {
		f->alt = calloc(n, sizeof(*f->alt));
		if (!f->alt)
			return strata_error_set(ret_err, -ENOMEM, "parse filters: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		if (!filters[i])
			return strata_error_set(ret_err, -EINVAL, "filter %zu is missing", i);
		r = parse_one(filters[i], &f->alt[i], ret_err);
		if (r < 0)
			return r;
		f->n_alt++;
	}
	*ret = TAKE_PTR(f);
	return 0;
}

static bool selector_match(const struct selector *s, strata_filter_field_fn field, void *userdata)
{
	const char *value = NULL;
	bool present;

	present = field((const char *const *)s->fieldpath, s->n_fieldpath, userdata, &value);
	if (!present || !value)
		value = "";
	switch (s->op) {
	case OP_PRESENT:
		return present;
	case OP_EQUAL:
		return present && streq(value, s->value);
	case OP_NOT_EQUAL:
		return !streq(value, s->value);
	case OP_MATCHES:
		return regexec(&s->re, value, 0, NULL, 0) == 0;
	}
	return false;
}

bool strata_filter_match(const struct strata_filter *f, strata_filter_field_fn field,
                         void *userdata)
{
	if (!f || f->n_alt == 0)
		return true;
	for (size_t i = 0; i < f->n_alt; i++) {
		const struct conjunction *c = &f->alt[i];
		size_t j;

		for (j = 0; j < c->n_sel; j++)
			if (!selector_match(&c->sel[j], field, userdata))
				break;
		if (j == c->n_sel)
			return true;
	}
	return false;
}
