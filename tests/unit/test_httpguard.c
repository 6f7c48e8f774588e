/* Unit tests: http/httpguard's pure parts (issue 31.1): the --trusted-proxy list (addresses
 * and CIDR blocks, IPv4, IPv6, IPv4-mapped peers) and the origin a client reached the server
 * by (scheme, Host, forwarded headers believed only when given). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/http/httpguard.h"
#include "../../src/http/server.h"
#include "../../src/util/status.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static bool listed4(const char *list, const char *ip)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    return httpguard_addr_listed(list, (const struct sockaddr *)&sa);
}

static bool listed6(const char *list, const char *ip)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
    return httpguard_addr_listed(list, (const struct sockaddr *)&sa);
}

static void test_proxy_list(void **state)
{
    (void)state;
    char err[200];
    const char *list = " 10.0.0.5 ,192.168.0.0/16,, fd00::/8, 172.16.0.0/12 ";
    assert_int_equal(httpguard_proxies_check(list, err, sizeof(err)), NS_OK);
    assert_true(listed4(list, "10.0.0.5"));
    assert_false(listed4(list, "10.0.0.6"));
    assert_true(listed4(list, "192.168.44.1"));
    assert_false(listed4(list, "192.169.0.1"));
    assert_true(listed4(list, "172.31.255.255"));  /* /12: 172.16 to 172.31 */
    assert_false(listed4(list, "172.32.0.1"));
    assert_true(listed6(list, "fd12::1"));
    assert_false(listed6(list, "fe80::1"));
    assert_true(listed6(list, "::ffff:10.0.0.5")); /* an IPv4 peer on an IPv6 socket */
    assert_false(listed6(list, "::ffff:10.0.0.6"));
    assert_true(listed4("0.0.0.0/0", "8.8.8.8"));
    assert_false(listed4(NULL, "10.0.0.5"));
    assert_false(listed4("", "10.0.0.5"));
    static const char *const bad[] = {"10.0.0.1,proxy.local", "10.0.0.0/33", "10.0.0.0/", "::/129", "10.0.0.0/8x",
                                      "1.2.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(httpguard_proxies_check(bad[i], err, sizeof(err)), NS_ERR_INVALID);
        assert_non_null(strstr(err, "is not an IP address or a CIDR block"));
    }
    /* a malformed entry beside good ones matches nothing, the good ones still do */
    assert_true(listed4("junk, 10.0.0.5", "10.0.0.5"));
}

static void test_origin(void **state)
{
    (void)state;
    char o[300];
    httpguard_origin_of(false, "127.0.0.1:8080", NULL, NULL, "0.0.0.0:8080", o, sizeof(o));
    assert_string_equal(o, "http://127.0.0.1:8080");
    httpguard_origin_of(true, "api.example.com", NULL, NULL, "0.0.0.0:443", o, sizeof(o));
    assert_string_equal(o, "https://api.example.com");
    /* no Host (HTTP/1.0), or one that is no host: the listen address */
    httpguard_origin_of(false, NULL, NULL, NULL, "10.0.0.1:8080", o, sizeof(o));
    assert_string_equal(o, "http://10.0.0.1:8080");
    httpguard_origin_of(false, "a b/c", NULL, NULL, "10.0.0.1:8080", o, sizeof(o));
    assert_string_equal(o, "http://10.0.0.1:8080");
    /* a trusted proxy's headers: their first values */
    httpguard_origin_of(false, "10.0.0.1:8080", "https, http", "api.example.com, inner", "x", o, sizeof(o));
    assert_string_equal(o, "https://api.example.com");
    httpguard_origin_of(true, "10.0.0.1:8080", "http", NULL, "x", o, sizeof(o));
    assert_string_equal(o, "http://10.0.0.1:8080");
    httpguard_origin_of(false, "[::1]:8080", "gopher", "evil.example/x?y", "x", o, sizeof(o));
    assert_string_equal(o, "http://[::1]:8080");
}

/* --public-url: http(s)://HOST[:PORT][/PREFIX], nothing a URL built on it could trip on */
static void test_public_url(void **state)
{
    (void)state;
    char err[300];
    static const char *const ok[] = {"https://api.example.com", "http://10.0.0.1:8080/", "https://example.com/nightshift"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(server_public_url_check(ok[i], err, sizeof(err)), NS_OK);
    static const char *const bad[] = {"api.example.com", "ftp://x", "https://", "https:///x", "https://a b",
                                      "https://a/?q", "https://a/#f", "https://a/\"x", "https://a\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(server_public_url_check(bad[i], err, sizeof(err)), NS_ERR_INVALID);
        assert_non_null(strstr(err, "--public-url must be"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_list),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_public_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
