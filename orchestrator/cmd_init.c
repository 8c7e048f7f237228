// maye init: makes a randomly initialised Qwen2-VL / Qwen2.5-VL checkpoint of any size from a config.json,
// in the hub layout (config.json + model.safetensors with hub tensor names), for tests and demos.
#include "commands.h"
#include "debug_cli.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init_usage(FILE *f) {
    fprintf(f,
            "usage: maye init --config MODEL.json -o DIR [--seed S] [--dtype f32|bf16|f16] [--threads N]\n\n"
            "Writes DIR/config.json (MODEL.json with torch_dtype set) and DIR/model.safetensors: weights drawn from\n"
            "normal(0, initializer_range), norm weights 1, biases 0; the same config and seed give the same\n"
            "weights. MODEL.json is a Qwen2-VL or Qwen2.5-VL config.json (classic or nested layout). No\n"
            "tokenizer.json is written: copy one into DIR (or set model.tokenizer) before running the stages.\n\n"
            "  --config FILE   the model's config.json (required)\n"
            "  -o DIR          output checkpoint directory (required; created)\n"
            "  --seed S        random seed (default 0)\n"
            "  --dtype D       f32 (default), bf16 or f16\n"
            "  --threads N     CPU threads (default 0 = all cores)\n"
            "  -h, --help      this help\n");
}

int cmd_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *seed_s = "0", *dtype_s = "f32", *threads_s = "0";
    const maye_debug_opt opts[] = {
        {"--config", &config, NULL}, {"-o", &out, NULL},
        {"--seed", &seed_s, NULL},   {"--dtype", &dtype_s, NULL},
        {"--threads", &threads_s, NULL},
    };
    int status = maye_debug_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), "init", init_usage);
    if (status >= 0) return status;
    if (!config || !out) {
        init_usage(stderr);
        return 2;
    }
    maye_dtype dtype;
    if (!strcmp(dtype_s, "f32")) dtype = MAYE_F32;
    else if (!strcmp(dtype_s, "bf16")) dtype = MAYE_BF16;
    else if (!strcmp(dtype_s, "f16")) dtype = MAYE_F16;
    else {
        log_error("--dtype '%s': use f32, bf16 or f16", dtype_s);
        return 2;
    }
    int64_t seed, threads;
    if (maye_parse_i64(seed_s, &seed, "--seed") < 0 || maye_parse_i64(threads_s, &threads, "--threads") < 0) {
        maye_report_error();
        return 2;
    }
    cpu_set_threads((int)threads);
    maye_buf text = {0};
    maye_model m;
    if (maye_read_file(config, &text) < 0 || maye_model_init(&m, text.data, config, (uint64_t)seed) < 0) {
        maye_buf_free(&text);
        maye_report_error();
        return 1;
    }
    maye_buf_free(&text);
    int rc = maye_model_save(&m, out, dtype);
    if (rc < 0) maye_report_error();
    else log_info("wrote %s (%s, %zu parameters, %s)", out, maye_arch_name(m.cfg.arch), m.n_params, dtype_s);
    maye_model_free(&m);
    return rc < 0 ? 1 : 0;
}
