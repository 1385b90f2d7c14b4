/*
 * gpu_smi_parse.c - parse `nvidia-smi --query-gpu` CSV text into GPU samples
 * and error entries (see gpu_smi_parse.h for the accepted forms).
 *
 * Pure: reads exactly the bytes it is given, writes only into the caller's
 * structs.  It is not a general CSV reader: nvidia-smi never quotes, so a
 * comma always separates fields.  Running nvidia-smi is gpu_smi.c's job.
 */
#include "gpu/gpu_smi_parse.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tm_smi_field_column[TM_SMI_NFIELDS] = {
    "name", "uuid", "utilization.gpu", "memory.used", "memory.total", "power.draw",
    "temperature.gpu",
};

const unsigned tm_smi_field_bit[TM_SMI_NFIELDS] = {
    TM_GPU_NAME,     TM_GPU_UUID,  TM_GPU_UTIL, TM_GPU_MEM_USED,
    TM_GPU_MEM_TOTAL, TM_GPU_POWER, TM_GPU_TEMP,
};

/* Column slots: the index, then one per enum tm_smi_field. */
enum { SLOT_INDEX = 0, SLOT_FIELD0 = 1, NSLOTS = 1 + TM_SMI_NFIELDS };

/* Header names (unit suffix removed), with the aliases of nvidia-smi's
 * --help-query-gpu and of hand-written headers (the RTX A5000 log's). */
static const struct {
    const char *name;
    int slot;
} header_names[] = {
    {"index", SLOT_INDEX},
    {"name", SLOT_FIELD0 + TM_SMI_NAME},
    {"gpu_name", SLOT_FIELD0 + TM_SMI_NAME},
    {"uuid", SLOT_FIELD0 + TM_SMI_UUID},
    {"gpu_uuid", SLOT_FIELD0 + TM_SMI_UUID},
    {"utilization.gpu", SLOT_FIELD0 + TM_SMI_UTIL},
    {"gpu_utilization", SLOT_FIELD0 + TM_SMI_UTIL},
    {"memory.used", SLOT_FIELD0 + TM_SMI_MEM_USED},
    {"memory.total", SLOT_FIELD0 + TM_SMI_MEM_TOTAL},
    {"power.draw", SLOT_FIELD0 + TM_SMI_POWER},
    {"temperature.gpu", SLOT_FIELD0 + TM_SMI_TEMP},
    {"temperature", SLOT_FIELD0 + TM_SMI_TEMP},
};

/* How each numeric field is read: the unit nvidia-smi may append, the
 * accepted range (as printed), and the factor to our unit. */
static const struct {
    const char *unit;
    double lo, hi, scale;
} numeric[TM_SMI_NFIELDS] = {
    [TM_SMI_UTIL] = {"%", 0, 100, 0.01}, /* percent -> fraction */
    [TM_SMI_MEM_USED] = {"MiB", 0, 1e9, 1},
    [TM_SMI_MEM_TOTAL] = {"MiB", 0, 1e9, 1},
    [TM_SMI_POWER] = {"W", 0, 1e5, 1},
    [TM_SMI_TEMP] = {NULL, -100, 300, 1},
};

struct span {
    const char *p;
    size_t n;
};

struct parser {
    const char *host;
    struct tm_gpu_poll *out;
    struct tm_smi_why *why;
    unsigned lineno;
    /* The current section: column of each slot (-1 absent), field count. */
    int pos[NSLOTS];
    size_t ncols;
    bool header;
    int rowno;    /* rows and GPU error lines since the header */
    int last_idx; /* index of the last row, -1 before the first */
    size_t pending[TM_GPU_MAX]; /* GPU error entries since the last row */
    size_t npending;
    /* Notes: malformed values and dropped lines. */
    size_t nnotes;
    char note[200];
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static struct span trim(struct span s)
{
    while (s.n && is_blank(s.p[0]))
        s.p++, s.n--;
    while (s.n && is_blank(s.p[s.n - 1]))
        s.n--;
    return s;
}

static bool span_ieq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char a = s.p[i], b = lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* Next comma-separated field of *rest (trimmed); *rest moves past it. */
static struct span next_field(struct span *rest)
{
    const char *comma = memchr(rest->p, ',', rest->n);
    size_t n = comma ? (size_t)(comma - rest->p) : rest->n;
    struct span f = {rest->p, n};
    rest->p += comma ? n + 1 : n;
    rest->n -= comma ? n + 1 : n;
    return trim(f);
}

static size_t count_fields(struct span line)
{
    size_t n = 1;
    for (const char *p = line.p; (p = memchr(p, ',', (size_t)(line.p + line.n - p))); p++)
        n++;
    return n;
}

/* Copy @p s into @p dst (size > 0), truncated, bytes outside printable ASCII
 * replaced by '?' so the text is always valid UTF-8 for JSON and BSON. */
static void copy_text(char *dst, size_t size, struct span s)
{
    size_t n = s.n < size - 1 ? s.n : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[n] = '\0';
}

static void add_note(struct parser *ps, const char *column, const char *what, struct span v)
{
    if (ps->nnotes++ == 0) {
        char val[48];
        copy_text(val, sizeof(val), v);
        snprintf(ps->note, sizeof(ps->note), "line %u, %s: %s \"%s\"", ps->lineno, column, what,
                 val);
    }
}

/* Header column name -> slot, or -1.  A unit suffix ("memory.used [MiB]",
 * "temperature[°C]") is ignored. */
static int header_slot(struct span f)
{
    if (f.n && f.p[f.n - 1] == ']') {
        for (size_t i = f.n; i-- > 0;)
            if (f.p[i] == '[') {
                f.n = i;
                break;
            }
        f = trim(f);
    }
    for (size_t i = 0; i < sizeof(header_names) / sizeof(header_names[0]); i++)
        if (span_ieq(f, header_names[i].name))
            return header_names[i].slot;
    return -1;
}

/* A header names at least one column we know.  Data rows never do: their
 * fields are numbers, GPU names, UUIDs and placeholders. */
static bool try_header(struct parser *ps, struct span line)
{
    int pos[NSLOTS];
    bool known = false;
    size_t ncols = count_fields(line);
    for (int k = 0; k < NSLOTS; k++)
        pos[k] = -1;
    struct span rest = line;
    for (size_t col = 0; col < ncols; col++) {
        int slot = header_slot(next_field(&rest));
        if (slot >= 0 && pos[slot] < 0) {
            pos[slot] = (int)col;
            known = true;
        }
    }
    if (!known)
        return false;
    memcpy(ps->pos, pos, sizeof(pos));
    ps->ncols = ncols;
    ps->header = true;
    ps->rowno = 0;
    ps->last_idx = -1;
    ps->npending = 0;
    return true;
}

static bool is_placeholder(struct span v)
{
    return (v.n >= 2 && v.p[0] == '[' && v.p[v.n - 1] == ']') || span_ieq(v, "N/A");
}

enum value_status { V_OK, V_NULL, V_MALFORMED, V_RANGE };

/* A decimal number ("-12", "631.95"), optionally followed by @p unit. */
static enum value_status parse_number(struct span v, const char *unit, double lo, double hi,
                                      double *out)
{
    if (v.n == 0)
        return V_MALFORMED;
    if (is_placeholder(v))
        return V_NULL;
    size_t i = 0, digits = 0;
    if (v.p[i] == '-')
        i++;
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++)
        digits++;
    if (digits && i < v.n && v.p[i] == '.') {
        size_t frac = 0;
        for (i++; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++)
            frac++;
        if (!frac)
            return V_MALFORMED;
    }
    char num[48];
    if (!digits || i >= sizeof(num))
        return V_MALFORMED;
    memcpy(num, v.p, i);
    num[i] = '\0';
    struct span rest = trim((struct span){v.p + i, v.n - i});
    if (rest.n && !(unit && span_ieq(rest, unit)))
        return V_MALFORMED;
    double d = strtod(num, NULL); /* only digits, '-' and '.': locale-proof */
    if (!(d >= lo && d <= hi))
        return V_RANGE;
    *out = d;
    return V_OK;
}

static void set_why(struct parser *ps, int field, const char *prefix, struct span v)
{
    if (!ps->why)
        return;
    char *dst = ps->why[ps->out->n].text[field];
    size_t size = sizeof(ps->why[0].text[0]);
    size_t plen = strlen(prefix);
    if (plen >= size)
        plen = size - 1;
    memcpy(dst, prefix, plen);
    copy_text(dst + plen, size - plen, v);
}

static void parse_field(struct parser *ps, struct tm_gpu_sample *s, int field, struct span v)
{
    const char *column = tm_smi_field_column[field];
    if (field == TM_SMI_NAME || field == TM_SMI_UUID) {
        if (v.n == 0) {
            set_why(ps, field, "empty", v);
        } else if (is_placeholder(v)) {
            set_why(ps, field, "", v);
        } else {
            char *dst = field == TM_SMI_NAME ? s->name : s->uuid;
            copy_text(dst, field == TM_SMI_NAME ? sizeof(s->name) : sizeof(s->uuid), v);
            s->valid |= tm_smi_field_bit[field];
        }
        return;
    }
    double d = 0;
    switch (parse_number(v, numeric[field].unit, numeric[field].lo, numeric[field].hi, &d)) {
    case V_OK:
        d = d * numeric[field].scale + 0.0; /* + 0.0: "-0" reads as 0 */
        if (field == TM_SMI_UTIL)
            s->utilization = d;
        else if (field == TM_SMI_MEM_USED)
            s->mem_used_mb = d;
        else if (field == TM_SMI_MEM_TOTAL)
            s->mem_total_mb = d;
        else if (field == TM_SMI_POWER)
            s->power_w = d;
        else
            s->temperature_c = d;
        s->valid |= tm_smi_field_bit[field];
        break;
    case V_NULL:
        set_why(ps, field, "", v);
        break;
    case V_MALFORMED:
        set_why(ps, field, "malformed: ", v);
        add_note(ps, column, "not a number", v);
        break;
    case V_RANGE:
        set_why(ps, field, "out of range: ", v);
        add_note(ps, column, "out of range", v);
        break;
    }
}

/* An index: 0..999999999, digits only. */
static int parse_index(struct span v)
{
    if (v.n == 0 || v.n > 9)
        return -1;
    int idx = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        idx = idx * 10 + (v.p[i] - '0');
    }
    return idx;
}

static void parse_error_line(struct parser *ps, struct span line);

static void parse_row(struct parser *ps, struct span line)
{
    int rowno = ps->rowno++;
    struct tm_gpu_poll *out = ps->out;
    if (out->n >= TM_GPU_MAX) {
        add_note(ps, "row", "dropped: more GPU rows than TM_GPU_MAX, from", line);
        return;
    }
    struct tm_gpu_sample *s = &out->samples[out->n];
    memset(s, 0, sizeof(*s));
    if (ps->why)
        memset(&ps->why[out->n], 0, sizeof(ps->why[0]));
    snprintf(s->host, sizeof(s->host), "%s", ps->host);
    s->source = "nvidia-smi";
    s->gpu_index = rowno;

    struct span rest = line;
    for (size_t col = 0; col < ps->ncols; col++) {
        struct span v = next_field(&rest);
        for (int k = 0; k < NSLOTS; k++) {
            if (ps->pos[k] != (int)col)
                continue;
            if (k == SLOT_INDEX) {
                /* A row whose index cannot be trusted is not a GPU sample:
                 * guessing would give two GPUs one index (gpu_metrics and
                 * the energy join key on it).  It becomes an error entry.
                 * (A repeated index is kept: saved time series repeat it.) */
                int idx = parse_index(v);
                if (idx < 0 || idx > TM_SMI_MAX_INDEX) {
                    add_note(ps, "index",
                             idx < 0 ? "not an index (row reported as an error)"
                                     : "out of range (row reported as an error)",
                             v);
                    ps->rowno--;
                    parse_error_line(ps, line);
                    return;
                }
                s->gpu_index = idx;
            } else {
                parse_field(ps, s, k - SLOT_FIELD0, v);
            }
        }
    }
    for (int f = 0; f < TM_SMI_NFIELDS; f++)
        if (ps->pos[SLOT_FIELD0 + f] < 0)
            set_why(ps, f, "no column", (struct span){"", 0});

    /* GPU error lines filling exactly the gap of missing indices before
     * this row are those GPUs (nvidia-smi prints GPUs in index order). */
    if (ps->npending && s->gpu_index - ps->last_idx - 1 == (int)ps->npending)
        for (size_t i = 0; i < ps->npending; i++)
            out->errors[ps->pending[i]].gpu_index = ps->last_idx + 1 + (int)i;
    ps->npending = 0;
    ps->last_idx = s->gpu_index;
    out->n++;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Find a PCI bus ID (domain of 4..8 hex digits, "DDDDDDDD:BB:DD.F") in @p s. */
static bool find_bus_id(struct span s, char *dst, size_t size)
{
    static const char shape[] = "HH:HH.H"; /* after the domain's ':' */
    for (size_t i = 0; i < s.n; i++) {
        if (i > 0 && is_hex(s.p[i - 1]))
            continue;
        size_t d = 0;
        while (i + d < s.n && d <= 8 && is_hex(s.p[i + d]))
            d++;
        if (d < 4 || d > 8 || i + d >= s.n || s.p[i + d] != ':')
            continue;
        size_t j = i + d + 1, k = 0;
        for (; k < sizeof(shape) - 1 && j + k < s.n; k++)
            if (shape[k] == 'H' ? !is_hex(s.p[j + k]) : s.p[j + k] != shape[k])
                break;
        if (k < sizeof(shape) - 1)
            continue;
        copy_text(dst, size, (struct span){s.p + i, d + 1 + k});
        return true;
    }
    return false;
}

static void parse_error_line(struct parser *ps, struct span line)
{
    struct tm_gpu_poll *out = ps->out;
    if (out->nerr >= TM_GPU_MAX) {
        add_note(ps, "line", "dropped: more error lines than TM_GPU_MAX, from", line);
        return;
    }
    struct tm_gpu_error *e = &out->errors[out->nerr];
    memset(e, 0, sizeof(*e));
    e->gpu_index = -1;
    copy_text(e->msg, sizeof(e->msg), line);
    if (find_bus_id(line, e->bus_id, sizeof(e->bus_id))) {
        /* A GPU's sentence in place of its row takes that row's place. */
        int rowno = ps->rowno++;
        if (ps->pos[SLOT_INDEX] < 0)
            e->gpu_index = rowno;
        else
            ps->pending[ps->npending++] = out->nerr;
    }
    out->nerr++;
}

int tm_smi_parse_why(const char *buf, size_t len, const char *host, struct tm_gpu_poll *out,
                     struct tm_smi_why *why, struct tm_error *err)
{
    struct parser *ps = &(struct parser){.host = host ? host : "", .out = out, .why = why};
    /* Without a header: the columns of TM_SMI_QUERY, in its order. */
    for (int k = 0; k < NSLOTS; k++)
        ps->pos[k] = k;
    ps->ncols = NSLOTS;
    ps->last_idx = -1;
    out->n = out->nerr = 0;

    size_t i = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* a UTF-8 byte-order mark, as some Windows editors save */
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
        struct span line = trim((struct span){buf + i, n});
        i += n + (nl ? 1 : 0);
        ps->lineno++;
        if (line.n == 0 || try_header(ps, line))
            continue;
        if (count_fields(line) == ps->ncols)
            parse_row(ps, line);
        else
            parse_error_line(ps, line);
    }

    if (out->n == 0 && out->nerr == 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "nvidia-smi output %s",
                     ps->header ? "has a header but no GPU rows" : "is empty");
        return -1;
    }
    if (ps->nnotes)
        tm_error_set(err, TM_ERR_PARSE, (int)ps->nnotes, "%zu note(s); first: %s", ps->nnotes,
                     ps->note);
    else
        tm_error_clear(err);
    return 0;
}

int tm_smi_parse(const char *buf, size_t len, const char *host, struct tm_gpu_poll *out,
                 struct tm_error *err)
{
    return tm_smi_parse_why(buf, len, host, out, NULL, err);
}
