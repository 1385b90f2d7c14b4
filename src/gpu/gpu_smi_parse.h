/*
 * gpu_smi_parse.h - the pure parser of `nvidia-smi --query-gpu` CSV output.
 *
 * Used by the nvidia-smi backend (gpu_smi.c) and by anyone who feeds saved
 * output.  No I/O, no allocation, no global state: safe to call from any
 * thread, and fuzzed (tests/fuzz/fuzz_smi.c).
 */
#ifndef TM_GPU_SMI_PARSE_H
#define TM_GPU_SMI_PARSE_H

#include <stddef.h>

#include "common/error.h"
#include "gpu/gpu.h"

/** Largest GPU index accepted, as in token events (DESIGN 2.1 gpu_index). */
#define TM_SMI_MAX_INDEX 65535

/**
 * The columns tokenmeter asks nvidia-smi for, in this order (the value of
 * --query-gpu).  Input without a header is read in this order.  pci.bus_id
 * is left out on purpose: a sample has no field for it, and a lost GPU's
 * bus ID is in the error sentence nvidia-smi prints instead of its row.
 */
#define TM_SMI_QUERY                                                                               \
    "index,name,uuid,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu"

/** The fields of a sample that can be null, in TM_SMI_QUERY order. */
enum tm_smi_field {
    TM_SMI_NAME,
    TM_SMI_UUID,
    TM_SMI_UTIL,
    TM_SMI_MEM_USED,
    TM_SMI_MEM_TOTAL,
    TM_SMI_POWER,
    TM_SMI_TEMP,
    TM_SMI_NFIELDS
};

/** nvidia-smi's column name of each field ("power.draw"), static. */
extern const char *const tm_smi_field_column[TM_SMI_NFIELDS];
/** The TM_GPU_* valid bit of each field (gpu.h). */
extern const unsigned tm_smi_field_bit[TM_SMI_NFIELDS];

/** Why each field of one sample is null: "" when it is valid, else the
 *  placeholder nvidia-smi printed ("[N/A]", "[Unknown Error]"), "no column",
 *  or "malformed: 12x" / "out of range: 250" (truncated to fit). */
struct tm_smi_why {
    char text[TM_SMI_NFIELDS][64];
};

/**
 * @brief Parse the stdout of `nvidia-smi --query-gpu=... --format=csv...`
 *        into one sample per GPU row and one error entry per line that is
 *        not a row.
 *
 * Accepts `csv,noheader,nounits` in TM_SMI_QUERY order, and any output with
 * a header (`csv`, `csv,nounits`, saved files with other column sets): with a
 * header, columns are found by name (unit suffix such as ` [MiB]` ignored,
 * plus the aliases gpu_name, gpu_uuid, gpu_utilization, temperature); a
 * missing column makes its field null; without an `index` column the row
 * number (counted from the header) is the index.  A header line may appear
 * again later (concatenated captures) and starts a new section.
 *
 * Fields are separated by commas and trimmed.  Values may carry their unit
 * (`19818 MiB`, `100 %`, `631.95 W`).  Units out: utilization a fraction
 * 0..1 (nvidia-smi prints percent), memory MiB (as printed, never MB),
 * power W, temperature degrees C.  A placeholder (`N/A`, or anything in
 * brackets such as `[N/A]`, `[Not Supported]`, `[Unknown Error]`) makes that
 * one field null (its valid bit clear, the value 0 unused).  A malformed or
 * out-of-range value (`12x`, `150 %`) makes that field null too and counts
 * as a note (see below); a malformed index falls back to the row number.
 *
 * A non-blank line whose field count differs from the header's (an error
 * sentence such as "Unable to determine the device handle for GPU
 * 00000000:0B:00.0: GPU is lost. ...", "Failed to initialize NVML: ...")
 * becomes an error entry: its text (non-ASCII bytes as '?'), the PCI bus ID
 * when the text has one, and gpu_index -1 unless it follows from the rows
 * around it.  nvidia-smi lists GPUs in index order, so n sentences with a
 * bus ID that fill a gap of exactly n missing indices between two rows (or
 * before the first) are those GPUs, in order (CASE-03: the sentence between
 * GPU 0 and GPU 2 is GPU 1); with no index column, a sentence with a bus ID
 * takes its row number.
 *
 * CRLF line ends, a UTF-8 byte-order mark and a missing final newline are
 * fine.  Exactly @p len bytes of @p buf are read: no NUL terminator needed.  Rows past TM_GPU_MAX (and
 * error lines past TM_GPU_MAX) are dropped with a note.
 *
 * @param buf   borrowed; @p len bytes
 * @param host  borrowed, stamped on every sample (NULL = "")
 * @param out   caller-allocated; out->n, out->nerr and the entries written
 *              are overwritten (the rest is not touched).  Samples get
 *              source "nvidia-smi" and ts_ms 0 (the caller stamps time).
 * @param why   NULL, or TM_GPU_MAX entries: why[i] explains sample i's nulls
 * @param err   may be NULL.  On success: cleared, or a TM_ERR_PARSE note
 *              (code = number of notes, msg = the first one, with its line
 *              and column) when a value was malformed or something dropped.
 * @returns 0 when at least one row or error entry was produced; -1 with a
 *          TM_ERR_PARSE message when the text holds neither (empty, blank,
 *          header only).
 */
int tm_smi_parse_why(const char *buf, size_t len, const char *host, struct tm_gpu_poll *out,
                     struct tm_smi_why *why, struct tm_error *err);

/** @brief tm_smi_parse_why() without the per-field reasons. */
int tm_smi_parse(const char *buf, size_t len, const char *host, struct tm_gpu_poll *out,
                 struct tm_error *err);

#endif
