// Records as JSON and back, for `maye cat` and for hand-editing a stage's input while debugging. The
// conversion walks the protobuf-c descriptors, so every message (and every field added later) works
// without per-message code.
//
// Mapping: field names as in schemas/maye.proto; enums as their names (an unknown value as its number);
// 32- and 64-bit integers as JSON numbers (exact); fixed64 digests as "0x%016x" strings; float/double as
// the shortest decimal that reads back to the same value, NaN and infinities as the strings "NaN",
// "Infinity", "-Infinity"; bytes as base64; map fields as objects; repeated fields as arrays; nested
// messages as objects (an absent one as null). Strings are UTF-8; a byte that is not part of valid UTF-8
// is written as the escape \udc80..\udcff and read back as that byte, so any string survives the round
// trip. Tensor messages are summarised as {"dtype", "shape", "checksum"} (FNV-1a of the data) unless in
// full mode, where "data" holds the elements as an array of numbers (base64 of the raw bytes when they
// cannot be written as numbers, e.g. a data length that does not match the shape). Parsing accepts what
// printing produces in full mode, and "data" as base64 in any case.
#pragma once
#include "core/util.h"

#include <protobuf-c/protobuf-c.h>

typedef enum {
    MAYE_JSON_SUMMARY = 0, // tensors as dtype, shape and checksum
    MAYE_JSON_FULL = 1,    // tensors with all their data (what parsing needs)
} maye_json_mode;

// Appends `msg` as one compact JSON object (no newline).
void maye_json_print_message(maye_buf *out, const ProtobufCMessage *msg, maye_json_mode mode);
// Appends {"<key>": <msg>} (no newline): one line of `maye cat` ("header", "query", "trajectory", ...).
void maye_json_print_record(maye_buf *out, const char *key, const ProtobufCMessage *msg, maye_json_mode mode);

// Parses one JSON object (text[0..len), no NUL needed) into a new message of type `desc`; free it with
// protobuf_c_message_free_unpacked(msg, NULL). Errors name the input line `line` and the field path
// below `root`: "line 3: query.pos.step: expected an integer, got 1.5".
int maye_json_parse_message(const char *text, size_t len, int line, const char *root,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
// Parses a line {"<key>": {...}} as printed by maye_json_print_record; any other key is an error.
int maye_json_parse_record(const char *text, size_t len, int line, const char *key,
                           const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
