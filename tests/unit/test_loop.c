/* tests/unit/test_loop.c: the loop glue's request ids: UUIDv4 in the canonical lowercase form
 * Envoy's x-request-id has, and not repeating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/loop.h"

static void test_uuid4_is_canonical(void **state)
{
    for (int n = 0; n < 1000; n++) {
        char id[37];
        memset(id, 'x', sizeof(id));
        weir_uuid4(id);
        assert_int_equal(strlen(id), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(id[i], '-');
            else
                assert_non_null(strchr("0123456789abcdef", id[i]));
        }
        assert_int_equal(id[14], '4');                  /* version 4 */
        assert_non_null(strchr("89ab", id[19]));         /* RFC 4122 variant */
    }
}

static void test_uuid4_does_not_repeat(void **state)
{
    static char ids[2000][37];
    for (int i = 0; i < 2000; i++)
        weir_uuid4(ids[i]);
    for (int i = 0; i < 2000; i++)
        for (int j = i + 1; j < 2000; j++)
            assert_string_not_equal(ids[i], ids[j]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid4_is_canonical),
        cmocka_unit_test(test_uuid4_does_not_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
