// smart_resize edge cases against values computed with transformers' Python formula: exact multiples,
// halves rounded to even, the min_pixels and max_pixels branches (with the max(factor, ...) floor), tiny
// images, and the errors for an aspect ratio over 200 and empty images.
#include "test.h"
#include "vision/image_processor.h"

typedef struct {
    int h, w;
    int64_t min_pixels, max_pixels;
    int want_h, want_w;
    const char *what;
} resize_case;

int main(void) {
    const int factor = 28;
    const resize_case cases[] = {
        {56, 56, 3136, 12845056, 56, 56, "exact multiple"},
        {84, 112, 3136, 12845056, 84, 112, "exact multiples"},
        {42, 280, 3136, 12845056, 56, 280, "42/28 = 1.5 rounds to 2 (even)"},
        {70, 280, 3136, 12845056, 56, 280, "70/28 = 2.5 rounds to 2 (even)"},
        {98, 280, 3136, 12845056, 112, 280, "98/28 = 3.5 rounds to 4 (even)"},
        {126, 280, 3136, 12845056, 112, 280, "126/28 = 4.5 rounds to 4 (even)"},
        {20, 30, 3136, 12845056, 56, 84, "below min_pixels: scaled up, ceil"},
        {10, 200, 3136, 12845056, 28, 252, "shorter side below the factor"},
        {1, 1, 3136, 12845056, 56, 56, "one pixel"},
        {1, 200, 3136, 12845056, 28, 812, "aspect ratio exactly 200"},
        {60, 90, 50176, 12845056, 196, 280, "raised min_pixels"},
        {1500, 2000, 3136, 200704, 364, 504, "above max_pixels: scaled down, floor"},
        {30, 5000, 3136, 3136, 28, 700, "max branch keeps at least one factor per side"},
        {2000, 3000, 3136, 12845056, 1988, 2996, "large, within bounds"},
        {8000, 6000, 3136, 12845056, 4116, 3080, "above the default max_pixels"},
        {1080, 1920, 3136, 12845056, 1092, 1932, "1080p"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const resize_case *c = &cases[i];
        int h = -1, w = -1;
        EXPECT_OK(maye_smart_resize(c->h, c->w, factor, c->min_pixels, c->max_pixels, &h, &w));
        EXPECT(h == c->want_h && w == c->want_w,
               "%s: smart_resize(%d, %d, min %lld, max %lld) = (%d, %d), want (%d, %d)", c->what, c->h, c->w,
               (long long)c->min_pixels, (long long)c->max_pixels, h, w, c->want_h, c->want_w);
        EXPECT(h % factor == 0 && w % factor == 0, "%s: (%d, %d) not multiples of %d", c->what, h, w, factor);
    }
    int h, w;
    EXPECT_FAIL(maye_smart_resize(1, 201, factor, 3136, 12845056, &h, &w), "aspect ratio must be smaller than 200");
    EXPECT_FAIL(maye_smart_resize(4020, 20, factor, 3136, 12845056, &h, &w), "aspect ratio must be smaller than 200");
    EXPECT_FAIL(maye_smart_resize(0, 20, factor, 3136, 12845056, &h, &w), "empty");
    EXPECT_FAIL(maye_smart_resize(20, 20, factor, 0, 12845056, &h, &w), "must be positive");
    EXPECT_FAIL(maye_smart_resize(100, 100, factor, INT64_C(1) << 40, INT64_C(1) << 41, &h, &w), "lower min_pixels");
    return TEST_RESULT();
}
