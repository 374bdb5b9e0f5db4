/* The common document, validated and rendered in C: snapshot.render.document_row's fast path.
 *
 * `row(obj, allowed_hosts)` returns what `document_row` returns for a document of the common shape (plain
 * ASCII URLs on an allowed host, a canonical lastmod, printable ASCII texts) and None for anything else, which
 * the Python code (the reference) then accepts, repairs or refuses with its reason. So this file only ever
 * accepts a subset of what the Python code accepts, and must give exactly the same row for it: the
 * differential tests in tests/test_fastrow.py hold it to that. Each check names the Python one it mirrors.
 *
 * Strict (the default), an object with a key this file does not read is left to Python too: the Python code
 * knows every field (document.DOCUMENT_FIELDS and its kin) and refuses unknown ones naming them, so a field
 * added there is never silently dropped here. Not strict (`--extra-fields ignore`), such keys are skipped.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MIN_LOC 12
#define MAX_LOC 2048
#define MAX_KEY 512
#define MAX_TEXT 2048
#define MAX_IMAGES 1000
#define MAX_ALTERNATES 200
#define MAX_DOCUMENT_BYTES (1024 * 1024)  /* document.MAX_DOCUMENT_BYTES: a longer line is Python's to refuse */

static PyObject *K_SECTION, *K_KEY, *K_LOC, *K_LASTMOD, *K_CHANGEFREQ, *K_PRIORITY, *K_IMAGES, *K_ALTERNATES,
    *K_VERSION, *K_TITLE, *K_CAPTION, *K_HREFLANG, *K_HREF, *K_OP;

static const char *CHANGEFREQS[] = {"always", "hourly", "daily", "weekly", "monthly", "yearly", "never", NULL};

/* -- an output buffer of ASCII ------------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char small[2048];
} Buf;

static int buf_grow(Buf *b, Py_ssize_t more) {
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more) cap *= 2;
    char *data = b->data == b->small ? PyMem_Malloc(cap) : PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->data == b->small) memcpy(data, b->small, b->len);
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int put(Buf *b, const char *s, Py_ssize_t n) {
    if (b->len + n > b->cap && buf_grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#define PUTS(b, lit) put((b), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* render.escape: & < > " ' (a '\r' never reaches here: every text is printable ASCII). */
static int put_escaped(Buf *b, const char *s, Py_ssize_t n) {
    if (b->len + 6 * n > b->cap && buf_grow(b, 6 * n) < 0) return -1;
    char *out = b->data + b->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': memcpy(out, "&amp;", 5); out += 5; break;
        case '<': memcpy(out, "&lt;", 4); out += 4; break;
        case '>': memcpy(out, "&gt;", 4); out += 4; break;
        case '"': memcpy(out, "&quot;", 6); out += 6; break;
        case '\'': memcpy(out, "&apos;", 6); out += 6; break;
        default: *out++ = s[i];
        }
    }
    b->len = out - b->data;
    return 0;
}

/* -- field checks: 1 accepted, 0 not the common case (Python decides), -1 an exception set --------------- */

/* An exact str of ASCII characters: its bytes and length. */
static inline int ascii(PyObject *o, const char **s, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o)) return 0;
    *s = (const char *)PyUnicode_1BYTE_DATA(o);
    *n = PyUnicode_GET_LENGTH(o);
    return 1;
}

/* The bytes of a str already checked to be ASCII. */
static inline const char *chars(PyObject *o, Py_ssize_t *n) {
    *n = PyUnicode_GET_LENGTH(o);
    return (const char *)PyUnicode_1BYTE_DATA(o);
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static inline int is_hex(char c) { return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }

/* document.SECTION_RE: [a-z0-9_-]{1,64} */
static int check_section(PyObject *o) {
    const char *s;
    Py_ssize_t n;
    if (o == NULL || !ascii(o, &s, &n) || n < 1 || n > 64) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '_' || s[i] == '-')) return 0;
    return 1;
}

/* An exact str of `min` to `max` printable ASCII characters (str.isascii() and str.isprintable()). */
static int printable(PyObject *o, Py_ssize_t min, Py_ssize_t max) {
    const char *s;
    Py_ssize_t n;
    if (!ascii(o, &s, &n) || n < min || n > max) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return 0;
    return 1;
}

/* document.check_key's fast path: 1 to MAX_KEY printable ASCII characters. */
static int check_key(PyObject *o) { return o != NULL && printable(o, 1, MAX_KEY); }

/* document.check_text's fast path: None, or at most MAX_TEXT printable ASCII characters. */
static int check_text(PyObject *o) { return o == NULL || o == Py_None || printable(o, 0, MAX_TEXT); }

/* The path, query and fragment characters of document.CLEAN_URL_RE. */
static inline int is_path_char(char c) {
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr(":/?@!$&'()*+,;=%~-._", c) != NULL);
}

/* document.check_url's fast path: CLEAN_URL_RE in full, MIN_LOC to MAX_LOC characters, every '%' followed by two
 * hex digits, and the host (lowercased) among `hosts` unless that is NULL or empty (any host). */
static int check_url(PyObject *o, PyObject *hosts) {
    const char *s;
    Py_ssize_t n, i;
    if (o == NULL || !ascii(o, &s, &n) || n < MIN_LOC || n > MAX_LOC) return 0;
    if (strncmp(s, "https://", 8) == 0) i = 8;
    else if (strncmp(s, "http://", 7) == 0) i = 7;
    else return 0;
    Py_ssize_t host = i;
    while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '.' || s[i] == '-')) i++;
    Py_ssize_t host_end = i;
    if (host_end == host) return 0;
    if (i < n && s[i] == ':') {
        Py_ssize_t digits = ++i;
        while (i < n && is_digit(s[i])) i++;
        if (i == digits || i - digits > 5) return 0;
    }
    if (i < n && (s[i] == '/' || s[i] == '?'))
        while (i < n && is_path_char(s[i])) i++;
    if (i < n && s[i] == '#') {
        i++;
        while (i < n && is_path_char(s[i])) i++;
    }
    if (i != n) return 0;
    for (const char *p = memchr(s, '%', n); p != NULL; p = memchr(p + 1, '%', n - (p + 1 - s)))
        if (p + 2 >= s + n || !is_hex(p[1]) || !is_hex(p[2])) return 0;
    if (hosts == NULL || PySet_GET_SIZE(hosts) == 0) return 1;
    char lower[MAX_LOC];
    Py_ssize_t len = host_end - host;
    for (Py_ssize_t j = 0; j < len; j++) {
        char c = s[host + j];
        lower[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    PyObject *name = PyUnicode_FromStringAndSize(lower, len);
    if (name == NULL) return -1;
    int found = PySet_Contains(hosts, name);
    Py_DECREF(name);
    return found;
}

/* document.HREFLANG_RE: [A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})* or x-default */
static int check_hreflang(PyObject *o) {
    const char *s;
    Py_ssize_t n, i = 0;
    if (o == NULL || !ascii(o, &s, &n)) return 0;
    if (n == 9 && memcmp(s, "x-default", 9) == 0) return 1;
    while (i < n && is_alpha(s[i])) i++;
    if (i < 2 || i > 3) return 0;
    while (i < n) {
        if (s[i++] != '-') return 0;
        Py_ssize_t start = i;
        while (i < n && (is_alpha(s[i]) || is_digit(s[i]))) i++;
        if (i == start || i - start > 8) return 0;
    }
    return 1;
}

static inline int two(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

/* Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* document.CANONICAL_LASTMOD_RE, and lastmod_timestamp of it: datetime.fromisoformat(s).timestamp() divides the
 * whole microseconds by 10**6 with correct rounding, which a double division matches while both are exact. */
static int check_lastmod(const char *s, Py_ssize_t n, double *stamp) {
    if (n < 20) return 0;  /* 2024-05-17T10:00:00Z */
    for (int i = 0; i < 4; i++)
        if (!is_digit(s[i])) return 0;
    if (memcmp(s, "0000", 4) == 0 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return 0;
    static const int digits[] = {5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    for (int i = 0; i < 10; i++)
        if (!is_digit(s[digits[i]])) return 0;
    int month = two(s + 5), day = two(s + 8), hour = two(s + 11), minute = two(s + 14), second = two(s + 17);
    if (month < 1 || month > 12 || day < 1 || day > 28 || hour > 23 || minute > 59 || second > 59) return 0;
    Py_ssize_t i = 19;
    int64_t micro = 0;
    if (s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && is_digit(s[i])) i++;
        Py_ssize_t count = i - start;
        if (count < 1 || count > 6) return 0;
        for (Py_ssize_t j = 0; j < 6; j++) micro = micro * 10 + (j < count ? s[start + j] - '0' : 0);
    }
    int64_t offset;
    if (n - i == 1 && s[i] == 'Z') offset = 0;
    else if (n - i == 6 && (s[i] == '+' || s[i] == '-') && is_digit(s[i + 1]) && is_digit(s[i + 2])
             && s[i + 3] == ':' && is_digit(s[i + 4]) && is_digit(s[i + 5])) {
        int oh = two(s + i + 1), om = two(s + i + 4);
        if (!((oh <= 13 && om <= 59) || (oh == 14 && om == 0))) return 0;
        offset = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
    } else return 0;
    int64_t year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + two(s + 2);
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    int64_t total = seconds * 1000000 + micro;
    if (total <= -(INT64_C(1) << 53) || total >= (INT64_C(1) << 53)) return 0;
    *stamp = (double)total / 1e6;
    return 1;
}

/* Takes a borrowed item of a dict: NULL when absent, -1 on an error of the lookup itself. */
#define GET(dict, key, into)                                                                                    \
    do {                                                                                                        \
        into = PyDict_GetItemWithError((dict), (key));                                                          \
        if (into == NULL && PyErr_Occurred()) goto error;                                                       \
    } while (0)

/* An output step: it fails only with an exception set (out of memory). */
#define TRY(expr)                                                                                               \
    do {                                                                                                        \
        if ((expr) < 0) goto error;                                                                             \
    } while (0)

#define CHECK(expr)                                                                                             \
    do {                                                                                                        \
        int ok_ = (expr);                                                                                       \
        if (ok_ < 0) goto error;                                                                                \
        if (ok_ == 0) goto other;                                                                               \
    } while (0)

/* Whether a dict holds no key but the `found` ones this file read (always, when not strict). */
static inline int only_known(PyObject *dict, Py_ssize_t found, int strict) {
    return !strict || PyDict_GET_SIZE(dict) == found;
}

/* The row of a document of the common shape, from field `skip` on (0: all of DocumentRow, 1: without the
 * section); None (a new reference) for any other document; NULL with an exception set on an error. */
static PyObject *make_row(PyObject *obj, PyObject *hosts, Py_ssize_t skip, int strict, Py_ssize_t max_size) {
    if (!PyDict_CheckExact(obj)) Py_RETURN_NONE;
    Buf b = {.data = NULL, .len = 0, .cap = sizeof(b.small)};
    b.data = b.small;
    PyObject *section, *key, *loc, *lastmod, *changefreq, *priority, *images, *alternates, *version, *op;
    PyObject *result = NULL;
    PyObject *lastmod_out = NULL, *stamp = NULL, *xml = NULL;
    GET(obj, K_SECTION, section);
    GET(obj, K_KEY, key);
    GET(obj, K_LOC, loc);
    GET(obj, K_LASTMOD, lastmod);
    GET(obj, K_CHANGEFREQ, changefreq);
    GET(obj, K_PRIORITY, priority);
    GET(obj, K_IMAGES, images);
    GET(obj, K_ALTERNATES, alternates);
    GET(obj, K_VERSION, version);
    GET(obj, K_OP, op);  /* read only to be counted: the callers decided it is an upsert */
    CHECK(only_known(obj, (section != NULL) + (key != NULL) + (loc != NULL) + (lastmod != NULL)
                     + (changefreq != NULL) + (priority != NULL) + (images != NULL) + (alternates != NULL)
                     + (version != NULL) + (op != NULL), strict));
    CHECK(check_section(section));
    CHECK(check_key(key));
    CHECK(check_url(loc, hosts));
    Py_ssize_t n;
    const char *s = chars(loc, &n);
    TRY(PUTS(&b, "<url><loc>"));
    TRY(put_escaped(&b, s, n));
    TRY(PUTS(&b, "</loc>"));
    if (lastmod != NULL && lastmod != Py_None) {
        const char *m;
        Py_ssize_t mn;
        double ts;
        CHECK(ascii(lastmod, &m, &mn));
        CHECK(check_lastmod(m, mn, &ts));
        if (m[mn - 1] == 'Z') {  /* normalise_lastmod: Z becomes +00:00 */
            char out[40];
            memcpy(out, m, mn - 1);
            memcpy(out + mn - 1, "+00:00", 6);
            lastmod_out = PyUnicode_FromStringAndSize(out, mn + 5);
        } else {
            lastmod_out = Py_NewRef(lastmod);
        }
        stamp = PyFloat_FromDouble(ts);
        if (lastmod_out == NULL || stamp == NULL) goto error;
        const char *o = (const char *)PyUnicode_1BYTE_DATA(lastmod_out);
        TRY(PUTS(&b, "<lastmod>"));
        TRY(put(&b, o, PyUnicode_GET_LENGTH(lastmod_out)));
        TRY(PUTS(&b, "</lastmod>"));
    }
    if (changefreq != NULL && changefreq != Py_None) {
        const char *c;
        Py_ssize_t cn;
        CHECK(ascii(changefreq, &c, &cn));
        int known = 0;
        for (const char **f = CHANGEFREQS; *f != NULL; f++)
            if ((Py_ssize_t)strlen(*f) == cn && memcmp(*f, c, cn) == 0) known = 1;
        CHECK(known);
        TRY(PUTS(&b, "<changefreq>"));
        TRY(put(&b, c, cn));
        TRY(PUTS(&b, "</changefreq>"));
    }
    if (priority != NULL && priority != Py_None) {
        double p;
        if (PyFloat_CheckExact(priority)) p = PyFloat_AS_DOUBLE(priority);
        else if (PyLong_CheckExact(priority)) {  /* exact: never a bool */
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(priority, &overflow);
            if (overflow || (v != 0 && v != 1)) goto other;
            p = (double)v;
        } else goto other;
        if (!(p >= 0.0 && p <= 1.0) || signbit(p)) goto other;  /* NaN fails too; -0.0 is written "-0.0" */
        char text[3];  /* f"{p:.1f}" of 0 <= p <= 1: "0.0" to "1.0" */
        int tenths = (int)(p * 10);
        if (tenths / 10.0 == p) {  /* 0.0, 0.1, ... 1.0 exactly: written without formatting */
            text[0] = (char)('0' + tenths / 10);
            text[1] = '.';
            text[2] = (char)('0' + tenths % 10);
        } else {
            char *formatted = PyOS_double_to_string(p, 'f', 1, 0, NULL);  /* what f"{p:.1f}" calls */
            if (formatted == NULL) goto error;
            memcpy(text, formatted, sizeof(text));
            PyMem_Free(formatted);
        }
        TRY(PUTS(&b, "<priority>"));
        TRY(put(&b, text, sizeof(text)));
        TRY(PUTS(&b, "</priority>"));
    }
    if (images != NULL && images != Py_None) {
        CHECK(PyList_CheckExact(images) && PyList_GET_SIZE(images) <= MAX_IMAGES);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(images); i++) {
            PyObject *image = PyList_GET_ITEM(images, i), *iloc, *title, *caption;
            CHECK(PyDict_CheckExact(image));
            GET(image, K_LOC, iloc);
            GET(image, K_TITLE, title);
            GET(image, K_CAPTION, caption);
            CHECK(only_known(image, (iloc != NULL) + (title != NULL) + (caption != NULL), strict));
            CHECK(check_url(iloc, NULL));  /* images may live on a CDN host: ANY_HOST */
            CHECK(check_text(title));
            CHECK(check_text(caption));
            const char *t;
            Py_ssize_t tn;
            t = chars(iloc, &tn);
            TRY(PUTS(&b, "<image:image><image:loc>"));
            TRY(put_escaped(&b, t, tn));
            TRY(PUTS(&b, "</image:loc>"));
            if (caption != NULL && caption != Py_None) {  /* Google's order: loc, caption, ..., title */
                t = chars(caption, &tn);
                TRY(PUTS(&b, "<image:caption>"));
                TRY(put_escaped(&b, t, tn));
                TRY(PUTS(&b, "</image:caption>"));
            }
            if (title != NULL && title != Py_None) {
                t = chars(title, &tn);
                TRY(PUTS(&b, "<image:title>"));
                TRY(put_escaped(&b, t, tn));
                TRY(PUTS(&b, "</image:title>"));
            }
            TRY(PUTS(&b, "</image:image>"));
        }
    }
    if (alternates != NULL && alternates != Py_None) {
        CHECK(PyList_CheckExact(alternates) && PyList_GET_SIZE(alternates) <= MAX_ALTERNATES);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(alternates); i++) {
            PyObject *alt = PyList_GET_ITEM(alternates, i), *hreflang, *href;
            CHECK(PyDict_CheckExact(alt));
            GET(alt, K_HREFLANG, hreflang);
            GET(alt, K_HREF, href);
            CHECK(only_known(alt, (hreflang != NULL) + (href != NULL), strict));
            CHECK(check_hreflang(hreflang));
            CHECK(check_url(href, hosts));
            const char *h, *t;
            Py_ssize_t hn, tn;
            h = chars(hreflang, &hn);
            t = chars(href, &tn);
            TRY(PUTS(&b, "<xhtml:link rel=\"alternate\" hreflang=\""));
            TRY(put(&b, h, hn));
            TRY(PUTS(&b, "\" href=\""));
            TRY(put_escaped(&b, t, tn));
            TRY(PUTS(&b, "\"/>"));
        }
    }
    if (version != NULL && version != Py_None) {  /* check_version: 0 <= version < 2**63, never a bool */
        int overflow;
        CHECK(PyLong_CheckExact(version));
        long long v = PyLong_AsLongLongAndOverflow(version, &overflow);
        if (v == -1 && PyErr_Occurred()) goto error;
        CHECK(!overflow && v >= 0);
    }
    TRY(PUTS(&b, "</url>\n"));
    if (b.len > max_size) goto other;  /* Rules.max_size: more than a shard can hold, Python says so */
    xml = PyUnicode_New(b.len, 127);
    if (xml == NULL) goto error;
    memcpy(PyUnicode_1BYTE_DATA(xml), b.data, b.len);
    PyObject *size = PyLong_FromSsize_t(b.len);  /* ASCII: characters are bytes */
    if (size == NULL) goto error;
    PyObject *fields[8] = {
        Py_NewRef(section), Py_NewRef(key), Py_NewRef(version != NULL ? version : Py_None), Py_NewRef(loc),
        lastmod_out != NULL ? lastmod_out : Py_NewRef(Py_None), stamp != NULL ? stamp : Py_NewRef(Py_None), size, xml,
    };
    result = PyTuple_New(8 - skip);
    if (result == NULL) {
        for (int i = 0; i < 8; i++) Py_DECREF(fields[i]);
        lastmod_out = stamp = xml = NULL;  /* released just above */
        goto error;
    }
    for (Py_ssize_t i = 0; i < 8; i++) {
        if (i < skip) Py_DECREF(fields[i]);
        else PyTuple_SET_ITEM(result, i - skip, fields[i]);
    }
    if (b.data != b.small) PyMem_Free(b.data);
    return result;
other:
    Py_XDECREF(lastmod_out);
    Py_XDECREF(stamp);
    if (b.data != b.small) PyMem_Free(b.data);
    Py_RETURN_NONE;
error:
    Py_XDECREF(lastmod_out);
    Py_XDECREF(stamp);
    Py_XDECREF(xml);
    Py_XDECREF(result);
    if (b.data != b.small) PyMem_Free(b.data);
    return NULL;
}

/* The optional argument `strict` (default true): see the top of this file. */
static int strict_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at) {
    return nargs > at ? PyObject_IsTrue(args[at]) : 1;
}

/* Rules.max_size: None (no limit) or the largest fragment in bytes; -1 with an exception set on a bad one. */
static int max_size_arg(PyObject *o, Py_ssize_t *into) {
    if (o == Py_None) {
        *into = PY_SSIZE_T_MAX;
        return 0;
    }
    *into = PyLong_AsSsize_t(o);
    return *into == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *row(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t max_size = PY_SSIZE_T_MAX;
    if (nargs < 2 || nargs > 4 || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "row(obj, allowed_hosts: frozenset, strict: bool = True, max_size: int | None = None)");
        return NULL;
    }
    int strict = strict_arg(args, nargs, 2);
    if (strict < 0) return NULL;
    if (nargs == 4 && max_size_arg(args[3], &max_size) < 0) return NULL;
    return make_row(args[0], args[1], 0, strict, max_size);
}

static inline int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }  /* what bytes.strip() strips */

/* snapshot.rebuild.parse_chunk's loop for a run of common documents: items[start:] (JSON lines as bytes, or
 * decoded objects) are decoded with `loads`, rendered, and appended to by_section[section] as rows without the
 * section, in order, until an item this code leaves to Python: a document not of the common shape, an event
 * other than an upsert, a line that is not JSON. Blank lines are skipped. Returns that item's index, or
 * len(items) when every item was taken. */
static PyObject *rows(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t max_size = PY_SSIZE_T_MAX;
    if (nargs < 5 || nargs > 7 || !PyList_CheckExact(args[0]) || !PyLong_CheckExact(args[1])
        || !PyAnySet_Check(args[2]) || !PyDict_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "rows(items: list, start: int, allowed_hosts: frozenset, loads, "
                                         "by_section: dict, strict: bool = True, max_size: int | None = None)");
        return NULL;
    }
    int strict = strict_arg(args, nargs, 5);
    if (strict < 0) return NULL;
    if (nargs == 7 && max_size_arg(args[6], &max_size) < 0) return NULL;
    PyObject *items = args[0], *hosts = args[2], *loads = args[3], *by_section = args[4];
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "rows: start must not be negative");
        return NULL;
    }
    for (; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *obj;
        if (PyBytes_CheckExact(item)) {
            const char *data = PyBytes_AS_STRING(item);
            Py_ssize_t a = 0, z = PyBytes_GET_SIZE(item);
            while (a < z && is_space(data[a])) a++;
            while (z > a && is_space(data[z - 1])) z--;
            if (a == z) continue;  /* a blank line: no item */
            if (z - a > MAX_DOCUMENT_BYTES) break;
            PyObject *line = z - a == PyBytes_GET_SIZE(item) ? Py_NewRef(item) : PyBytes_FromStringAndSize(data + a, z - a);
            if (line == NULL) return NULL;
            obj = PyObject_CallOneArg(loads, line);
            Py_DECREF(line);
            if (obj == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_ValueError)) return NULL;
                PyErr_Clear();  /* not JSON: Python says why */
                break;
            }
        } else {
            obj = Py_NewRef(item);
        }
        PyObject *op = PyDict_CheckExact(obj) ? PyDict_GetItemWithError(obj, K_OP) : NULL;
        if (op == NULL && PyErr_Occurred()) {
            Py_DECREF(obj);
            return NULL;
        }
        if (op != NULL && !(PyUnicode_CheckExact(op) && PyUnicode_CompareWithASCIIString(op, "upsert") == 0)) {
            Py_DECREF(obj);
            break;
        }
        PyObject *r = make_row(obj, hosts, 1, strict, max_size);
        if (r == NULL || r == Py_None) {
            Py_DECREF(obj);
            if (r == NULL) return NULL;
            Py_DECREF(r);
            break;
        }
        PyObject *section = PyDict_GetItemWithError(obj, K_SECTION);  /* there: make_row checked it */
        PyObject *list = section != NULL ? PyDict_GetItemWithError(by_section, section) : NULL;
        int failed = section == NULL || (list == NULL && PyErr_Occurred());
        if (!failed && list == NULL) {
            list = PyList_New(0);
            failed = list == NULL || PyDict_SetItem(by_section, section, list) < 0;
            Py_XDECREF(list);  /* by_section holds it */
        }
        failed = failed || PyList_Append(list, r) < 0;
        Py_DECREF(r);
        Py_DECREF(obj);
        if (failed) return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"row", (PyCFunction)(void (*)(void))row, METH_FASTCALL,
     "row(obj, allowed_hosts, strict=True, max_size=None) -> the DocumentRow of a document of the common shape, "
     "or None: see document_row."},
    {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL,
     "rows(items, start, allowed_hosts, loads, by_section, strict=True, max_size=None) -> the index of the first "
     "item left to Python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "sitemap_keeper.snapshot._fastrow", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastrow(void) {
    struct {
        PyObject **slot;
        const char *name;
    } keys[] = {{&K_SECTION, "section"}, {&K_KEY, "key"}, {&K_LOC, "loc"}, {&K_LASTMOD, "lastmod"},
                {&K_CHANGEFREQ, "changefreq"}, {&K_PRIORITY, "priority"}, {&K_IMAGES, "images"},
                {&K_ALTERNATES, "alternates"}, {&K_VERSION, "version"}, {&K_TITLE, "title"},
                {&K_CAPTION, "caption"}, {&K_HREFLANG, "hreflang"}, {&K_HREF, "href"}, {&K_OP, "op"}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if ((*keys[i].slot = PyUnicode_InternFromString(keys[i].name)) == NULL) return NULL;
    return PyModule_Create(&module);
}
