// Config: defaults, YAML, overrides, type errors, unknown keys with suggestions, round trip of the
// printed YAML.
#include "core/config.h"
#include "core/util.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static char *write_tmp(const char *name, const char *text) {
    char *p = maye_path_join(test_tmpdir(), name);
    if (maye_write_file_atomic(p, text, strlen(text)) < 0) maye_die("%s", maye_errmsg());
    return p;
}

int main(void) {
    maye_config c;
    EXPECT_OK(maye_config_load(&c, NULL, 0, NULL));
    EXPECT(c.data.batch_size == 128, "default batch_size %lld", (long long)c.data.batch_size);
    EXPECT(c.update.kl_loss_coeff == 0.001, "default kl_loss_coeff");
    EXPECT(c.traj.rewards.n == 3 && !strcmp(c.traj.rewards.items[2], "language"), "default rewards");
    maye_config_free(&c);

    char *good = write_tmp("good.yaml", "seed: 7\nrollout:\n  temperature: 0.6\n  stop_strings: [\"</s>\", x]\n"
                                        "update:\n  lr: 1e-5\n  train_vit: yes\n  advantage: grpo\n");
    char *ov[] = {"rollout.top_p=0.5", "data.batch_size=4", "traj.reward_weights=[1, 0.5]"};
    EXPECT_OK(maye_config_load(&c, good, 3, ov));
    EXPECT(c.seed == 7, "seed");
    EXPECT(c.rollout.temperature == 0.6 && c.rollout.top_p == 0.5, "floats");
    EXPECT(c.rollout.stop_strings.n == 2 && !strcmp(c.rollout.stop_strings.items[0], "</s>"), "strlist");
    EXPECT(c.update.lr == 1e-5 && c.update.train_vit, "lr/bool");
    EXPECT(c.data.batch_size == 4, "override int");
    EXPECT(c.traj.reward_weights.n == 2 && c.traj.reward_weights.v[1] == 0.5, "floatlist override");

    // the printed YAML reads back to the same config
    char *y = maye_config_to_yaml(&c);
    char *again = write_tmp("again.yaml", y);
    maye_config d;
    EXPECT_OK(maye_config_load(&d, again, 0, NULL));
    char *y2 = maye_config_to_yaml(&d);
    EXPECT(!strcmp(y, y2), "YAML round trip differs");
    EXPECT(maye_config_digest(&c) == maye_config_digest(&d), "digest");
    free(y), free(y2);
    maye_config_free(&d);
    maye_config_free(&c);

    // errors name file, line and key, and suggest the nearest key
    char *typo = write_tmp("typo.yaml", "rollout:\n  temprature: 0.6\n");
    EXPECT_FAIL(maye_config_load(&c, typo, 0, NULL), "typo.yaml:2: unknown config key 'rollout.temprature'; "
                                                     "did you mean 'rollout.temperature'?");
    maye_config_free(&c);
    char *wrongsec = write_tmp("wrongsec.yaml", "update:\n  temperature: 0.6\n");
    EXPECT_FAIL(maye_config_load(&c, wrongsec, 0, NULL), "did you mean 'rollout.temperature'");
    maye_config_free(&c);
    char *badtype = write_tmp("badtype.yaml", "data:\n  batch_size: lots\n");
    EXPECT_FAIL(maye_config_load(&c, badtype, 0, NULL), "badtype.yaml:2: data.batch_size: expected an integer");
    maye_config_free(&c);
    char *badchoice = write_tmp("badchoice.yaml", "model:\n  device: tpu\n");
    EXPECT_FAIL(maye_config_load(&c, badchoice, 0, NULL), "'tpu' is not one of cpu|cuda");
    maye_config_free(&c);
    char *badsyntax = write_tmp("badsyntax.yaml", "rollout:\n  n: [1, 2\n");
    EXPECT_FAIL(maye_config_load(&c, badsyntax, 0, NULL), "YAML syntax error");
    maye_config_free(&c);
    char *section = write_tmp("section.yaml", "rollout: 3\n");
    EXPECT_FAIL(maye_config_load(&c, section, 0, NULL), "is a section");
    maye_config_free(&c);
    char *bad_ov[] = {"rollout.n=two"};
    EXPECT_FAIL(maye_config_load(&c, NULL, 1, bad_ov), "command-line override 'rollout.n=two'");
    maye_config_free(&c);
    char *unk_ov[] = {"update.l=1"};
    EXPECT_FAIL(maye_config_load(&c, NULL, 1, unk_ov), "unknown config key 'update.l'");
    maye_config_free(&c);
    EXPECT_FAIL(maye_config_load(&c, "/nonexistent/x.yaml", 0, NULL), "cannot open '/nonexistent/x.yaml'");
    maye_config_free(&c);
    free(good), free(again), free(typo), free(wrongsec), free(badtype), free(badchoice), free(badsyntax),
        free(section);
    return TEST_RESULT();
}
