/* tests/unit/test_iptables.c: the `weir iptables` rule sets against golden files, and its
 * command line.
 *
 * The goldens in tests/data/iptables/ are iptables-restore inputs, checked by hand against
 * Istio's own (tools/istio-iptables/pkg/capture/testdata/). After an intended change,
 * WEIR_UPDATE_GOLDEN=1 rewrites them; review the diff before committing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/iptables.h"
#include "common/mem.h"

static char *read_data(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/iptables/%s", WEIR_TEST_DATA, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        weir_buf_append(&b, chunk, n);
    fclose(f);
    weir_buf_append(&b, "", 1); /* NUL-terminated for the string comparisons */
    *len = b.len - 1;
    return b.base;
}

static void expect_golden(const char *name, const weir_buf_t *got)
{
    if (getenv("WEIR_UPDATE_GOLDEN") != NULL) {
        char path[512];
        snprintf(path, sizeof(path), "%s/iptables/%s", WEIR_TEST_DATA, name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(got->base, 1, got->len, f), got->len);
        fclose(f);
        return;
    }
    size_t len;
    char *want = read_data(name, &len);
    char *text = weir_mem_strndup(got->base ? got->base : "", got->len);
    assert_string_equal(text, want); /* cmocka prints both on a mismatch */
    free(text);
    free(want);
}

/* Parses a NULL-terminated argument list the way `weir iptables ...` would (argv[0..1] are
 * "weir iptables"), over the defaults. Returns what weir_iptables_parse returns; what it
 * printed to stderr is left in err_text (caller frees). */
static int parse(weir_iptables_opts_t *o, char **err_text, ...)
{
    char *argv[64] = {"weir", "iptables"};
    int argc = 2;
    va_list ap;
    va_start(ap, err_text);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    weir_iptables_opts_default(o);
    char *out_text = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    FILE *out_f = open_memstream(&out_text, &out_len);
    FILE *err_f = open_memstream(&err, &err_len);
    assert_non_null(out_f);
    assert_non_null(err_f);
    int r = weir_iptables_parse(o, argc, argv, 2, out_f, err_f);
    fclose(out_f);
    fclose(err_f);
    if (r == WEIR_IPTABLES_HELP)
        assert_non_null(strstr(out_text, "usage: weir iptables"));
    free(out_text);
    if (err_text != NULL)
        *err_text = err;
    else
        free(err);
    return r;
}

static void test_default_golden(void **state)
{
    weir_iptables_opts_t o;
    weir_iptables_opts_default(&o);
    weir_buf_t out = WEIR_BUF_INIT;
    weir_iptables_rules(&o, &out);
    expect_golden("default.golden", &out);
    weir_buf_free(&out);

    /* No options at all is exactly the defaults. */
    weir_iptables_opts_t parsed;
    assert_int_equal(parse(&parsed, NULL, NULL), 0);
    assert_memory_equal(&parsed, &o, sizeof(o));
}

static void test_custom_golden(void **state)
{
    weir_iptables_opts_t o;
    assert_int_equal(parse(&o, NULL, "--proxy-uid", "1000", "--proxy-gid=2000", "--inbound-port",
                           "16006", "--outbound-port=16001", "--exclude-inbound-ports", "22,15021",
                           "--exclude-outbound-ports", "443,8443", NULL),
                     0);
    assert_int_equal(o.proxy_uid, 1000);
    assert_int_equal(o.proxy_gid, 2000);
    assert_false(o.dry_run);
    weir_buf_t out = WEIR_BUF_INIT;
    weir_iptables_rules(&o, &out);
    expect_golden("custom.golden", &out);
    weir_buf_free(&out);
}

static void test_port_lists(void **state)
{
    weir_iptables_opts_t o;
    /* Empty items are skipped and duplicates dropped, keeping the first order. */
    assert_int_equal(parse(&o, NULL, "--exclude-inbound-ports", ",22,,80,22,", NULL), 0);
    assert_int_equal(o.n_exclude_inbound, 2);
    assert_int_equal(o.exclude_inbound[0], 22);
    assert_int_equal(o.exclude_inbound[1], 80);

    /* "" excludes nothing: every inbound port but 15008 is captured. */
    assert_int_equal(parse(&o, NULL, "--exclude-inbound-ports=", "--dry-run", NULL), 0);
    assert_int_equal(o.n_exclude_inbound, 0);
    assert_true(o.dry_run);
    weir_buf_t out = WEIR_BUF_INIT;
    weir_iptables_rules(&o, &out);
    weir_buf_append(&out, "", 1);
    assert_null(strstr(out.base, "-A ISTIO_INBOUND -p tcp --dport 15021"));
    assert_non_null(strstr(out.base, "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN\n"));
    assert_non_null(strstr(out.base, "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n"));
    weir_buf_free(&out);

    /* Exactly the maximum is fine. */
    weir_buf_t list = WEIR_BUF_INIT;
    for (int i = 0; i < WEIR_IPTABLES_MAX_PORTS; i++)
        weir_buf_appendf(&list, "%s%d", i ? "," : "", 1000 + i);
    weir_buf_append(&list, "", 1);
    assert_int_equal(parse(&o, NULL, "--exclude-outbound-ports", list.base, NULL), 0);
    assert_int_equal(o.n_exclude_outbound, WEIR_IPTABLES_MAX_PORTS);
    assert_int_equal(o.exclude_outbound[WEIR_IPTABLES_MAX_PORTS - 1],
                     1000 + WEIR_IPTABLES_MAX_PORTS - 1);
    weir_buf_free(&list);
}

static void test_flags(void **state)
{
    weir_iptables_opts_t o;
    assert_int_equal(parse(&o, NULL, "--cleanup", "--dry-run", NULL), 0);
    assert_true(o.cleanup);
    assert_true(o.dry_run);
    assert_int_equal(parse(&o, NULL, "--help", NULL), WEIR_IPTABLES_HELP);
    assert_int_equal(parse(&o, NULL, "--dry-run", "-h", NULL), WEIR_IPTABLES_HELP);
    /* The largest id the kernel accepts; 0 is an id like any other. */
    assert_int_equal(parse(&o, NULL, "--proxy-uid", "4294967294", "--proxy-gid", "0", NULL), 0);
    assert_int_equal(o.proxy_uid, 4294967294u);
    assert_int_equal(o.proxy_gid, 0);
    assert_int_equal(parse(&o, NULL, "--inbound-port", "65535", NULL), 0);
    assert_int_equal(o.inbound_port, 65535);
}

/* One bad command line: parse fails, and the message names the problem. */
static void expect_parse_error(const char *want, ...)
{
    char *argv[16];
    int n = 0;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *)) != NULL && n < 15;)
        argv[n++] = a;
    va_end(ap);
    for (int i = n; i < 16; i++)
        argv[i] = NULL;

    weir_iptables_opts_t o;
    char *err = NULL;
    int r = parse(&o, &err, argv[0], argv[1], argv[2], argv[3], NULL);
    if (r != -1 || strstr(err, want) == NULL) {
        fprintf(stderr, "args [%s %s ...]: got %d, \"%s\"; want -1 and \"%s\"\n", argv[0],
                argv[1] ? argv[1] : "", r, err, want);
        free(err);
        fail();
    }
    free(err);
}

static void test_parse_errors(void **state)
{
    expect_parse_error("unknown option \"--bogus\"", "--bogus", NULL);
    expect_parse_error("unknown option \"-u\"", "-u", "1337", NULL);
    expect_parse_error("unknown option \"1337\"", "1337", NULL);
    expect_parse_error("--proxy-uid needs a value", "--proxy-uid", NULL);
    expect_parse_error("--exclude-inbound-ports needs a value", "--dry-run",
                       "--exclude-inbound-ports", NULL);
    expect_parse_error("--dry-run takes no value", "--dry-run=yes", NULL);
    expect_parse_error("--inbound-port: expected a port 1-65535, got \"0\"", "--inbound-port", "0",
                       NULL);
    expect_parse_error("got \"65536\"", "--outbound-port", "65536", NULL);
    expect_parse_error("got \"+80\"", "--outbound-port", "+80", NULL);
    expect_parse_error("got \" 80\"", "--outbound-port", " 80", NULL);
    expect_parse_error("got \"0x50\"", "--outbound-port=0x50", NULL);
    expect_parse_error("got \"\"", "--inbound-port=", NULL);
    expect_parse_error("--proxy-uid: expected a numeric id", "--proxy-uid", "istio-proxy", NULL);
    expect_parse_error("got \"4294967295\"", "--proxy-gid", "4294967295", NULL);
    expect_parse_error("got \"-1\"", "--proxy-gid", "-1", NULL);
    expect_parse_error("got \"99999999999999999999\"", "--proxy-uid", "99999999999999999999", NULL);
    expect_parse_error("--exclude-inbound-ports: expected a port 1-65535, got \"http\"",
                       "--exclude-inbound-ports", "80,http", NULL);
    expect_parse_error("got \"0\"", "--exclude-outbound-ports", "0", NULL);
    expect_parse_error("got \"80:90\"", "--exclude-outbound-ports", "80:90", NULL);
    expect_parse_error("got \"12345678901234567890\"", "--exclude-outbound-ports",
                       "1,12345678901234567890", NULL);
    expect_parse_error("must differ (both 15001)", "--inbound-port", "15001", NULL);

    weir_buf_t list = WEIR_BUF_INIT;
    for (int i = 0; i <= WEIR_IPTABLES_MAX_PORTS; i++)
        weir_buf_appendf(&list, "%s%d", i ? "," : "", 1000 + i);
    weir_buf_append(&list, "", 1);
    expect_parse_error("more than 64 ports", "--exclude-inbound-ports", list.base, NULL);
    weir_buf_free(&list);
}

static void test_find_chain(void **state)
{
    size_t len;
    char *saved = read_data("installed.save", &len);
    const char *name = weir_iptables_find_chain(saved, len);
    assert_non_null(name);
    assert_string_equal(name, "ISTIO_INBOUND");
    free(saved);

    /* A fresh table; and one of our names in another table does not count. */
    static const char fresh[] = "# Generated by iptables-save v1.8.9\n"
                                "*filter\n:INPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\nCOMMIT\n"
                                "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                                ":ISTIO_OUTPUT_X - [0:0]\n:XISTIO_OUTPUT - [0:0]\nCOMMIT\n";
    assert_null(weir_iptables_find_chain(fresh, sizeof(fresh) - 1));
    assert_null(weir_iptables_find_chain("", 0));

    /* Only ISTIO_OUTPUT, the last line without a newline. */
    static const char partial[] = "*nat\r\n:ISTIO_OUTPUT - [0:0]";
    name = weir_iptables_find_chain(partial, sizeof(partial) - 1);
    assert_non_null(name);
    assert_string_equal(name, "ISTIO_OUTPUT");
}

static void test_cleanup_golden(void **state)
{
    size_t len;
    char *saved = read_data("installed.save", &len);
    weir_buf_t out = WEIR_BUF_INIT;
    /* 4 chains, and 4 jumps into them from PREROUTING, OUTPUT and KEEP_ME; the comment that
     * mentions "-j ISTIO_OUTPUT" and the filter table's rule are not ours to remove. */
    assert_int_equal(weir_iptables_cleanup_rules(saved, len, &out), 8);
    expect_golden("cleanup.golden", &out);
    weir_buf_free(&out);
    free(saved);

    /* Nothing installed: nothing to do, nothing written. */
    static const char fresh[] = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                                "-A OUTPUT -p tcp -j RETURN\nCOMMIT\n";
    assert_int_equal(weir_iptables_cleanup_rules(fresh, sizeof(fresh) - 1, &out), 0);
    assert_int_equal(out.len, 0);

    /* A leftover jump without its chain is still removed (a half-done manual cleanup). */
    static const char jump_only[] = "*nat\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n";
    assert_int_equal(weir_iptables_cleanup_rules(jump_only, sizeof(jump_only) - 1, &out), 1);
    weir_buf_append(&out, "", 1);
    assert_string_equal(out.base, "*nat\n-D OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n");
    weir_buf_free(&out);
}

/* What the install writes, the cleanup of the resulting table takes away: every chain the
 * install creates with -N is flushed and deleted, and both jumps are removed. */
static void test_cleanup_matches_install(void **state)
{
    size_t len;
    char *golden = read_data("default.golden", &len);
    /* Turn the install input into what iptables-save would show for those two jumps and
     * the four chains (the form of the rules inside the chains does not matter). */
    weir_buf_t saved = WEIR_BUF_INIT;
    weir_buf_append_str(&saved, "*nat\n");
    for (char *line = strtok(golden, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "-N ", 3) == 0)
            weir_buf_appendf(&saved, ":%s - [0:0]\n", line + 3);
        else if (strncmp(line, "-A PREROUTING ", 14) == 0 || strncmp(line, "-A OUTPUT ", 10) == 0)
            weir_buf_appendf(&saved, "%s\n", line);
    }
    weir_buf_append_str(&saved, "COMMIT\n");
    weir_buf_t out = WEIR_BUF_INIT;
    assert_int_equal(weir_iptables_cleanup_rules(saved.base, saved.len, &out), 6);
    weir_buf_append(&out, "", 1);
    assert_string_equal(out.base, "*nat\n"
                                  "-D PREROUTING -p tcp -j ISTIO_INBOUND\n"
                                  "-D OUTPUT -j ISTIO_OUTPUT\n"
                                  "-F ISTIO_INBOUND\n-F ISTIO_REDIRECT\n"
                                  "-F ISTIO_IN_REDIRECT\n-F ISTIO_OUTPUT\n"
                                  "-X ISTIO_INBOUND\n-X ISTIO_REDIRECT\n"
                                  "-X ISTIO_IN_REDIRECT\n-X ISTIO_OUTPUT\n"
                                  "COMMIT\n");
    weir_buf_free(&out);
    weir_buf_free(&saved);
    free(golden);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_golden), cmocka_unit_test(test_custom_golden),
        cmocka_unit_test(test_port_lists),     cmocka_unit_test(test_flags),
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_find_chain),
        cmocka_unit_test(test_cleanup_golden), cmocka_unit_test(test_cleanup_matches_install),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
