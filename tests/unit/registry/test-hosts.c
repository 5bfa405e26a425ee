/* SPDX-License-Identifier: Apache-2.0 */
/* certs.d hosts.toml resolution, docker config.json credentials, and
 * WWW-Authenticate parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "registry.h"
#include "registry-internal.h"
#include "helpers.h"

static int setup(void **state)
{
	*state = th_mkdtemp();
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	th_rm_rf(*state);
	free(*state);
	return 0;
}

static void load(const char *dir, const char *domain, bool plain,
                 struct content_registry_hosts **ret)
{
	_cleanup_error_ struct strata_error *err = NULL;
	int r = content_registry_hosts_load(dir, domain, plain, ret, &err);
	if (r < 0)
		print_error("%s: %s\n", domain, strata_error_message(err));
	assert_int_equal(r, 0);
}

#define ALL_CAPS \
	(CONTENT_REGISTRY_CAP_PULL | CONTENT_REGISTRY_CAP_RESOLVE | CONTENT_REGISTRY_CAP_PUSH)

static void test_defaults(void **state)
{
	const char *dir = *state; /* empty: every domain falls to the defaults */
	struct {
		const char *domain;
		bool plain;
		const char *scheme, *host;
	} cases[] = {
	        {"docker.io", false, "https", "registry-1.docker.io"},
	        {"docker.io", true, "https", "registry-1.docker.io"},
	        {"quay.io", false, "https", "quay.io"},
	        {"quay.io", true, "http", "quay.io"},
	        {"localhost", false, "http", "localhost"},
	        {"localhost:5000", false, "http", "localhost:5000"},
	        {"127.0.0.1:5000", false, "http", "127.0.0.1:5000"},
	        {"127.1.2.3", false, "http", "127.1.2.3"},
	        {"[::1]:5000", false, "http", "[::1]:5000"},
	        {"10.0.0.1:5000", false, "https", "10.0.0.1:5000"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		load(i % 2 ? dir : NULL, cases[i].domain, cases[i].plain, &hs);
		assert_int_equal(hs->n_hosts, 1);
		assert_string_equal(hs->hosts[0].scheme, cases[i].scheme);
		assert_string_equal(hs->hosts[0].host, cases[i].host);
		assert_string_equal(hs->hosts[0].path, "/v2");
		assert_int_equal(hs->hosts[0].capabilities, ALL_CAPS);
		assert_false(hs->hosts[0].skip_verify && streq(cases[i].scheme, "https"));
	}
}

static void test_mirrors(void **state)
{
	const char *dir = *state;
	_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
	_cleanup_free_ char *ca1 = NULL, *ca2 = NULL;

	/* file order, not alphabetical: z-mirror first */
	assert_int_equal(th_write_file(dir, "docker.io/hosts.toml",
	                               "server = \"https://registry-1.docker.io\"\n"
	                               "\n"
	                               "[host.\"https://z-mirror.example\"]\n"
	                               "  capabilities = [\"pull\", \"resolve\"]\n"
	                               "  ca = \"z.crt\"\n"
	                               "  [host.\"https://z-mirror.example\".header]\n"
	                               "    x-custom = \"1\"\n"
	                               "    x-multi = [\"a\", \"b\"]\n"
	                               "\n"
	                               "[host.\"http://a-mirror.example:5000/prefix/\"]\n"
	                               "  capabilities = [\"pull\"]\n"
	                               "  skip_verify = true\n"
	                               "  ca = [\"/abs/a.crt\", \"rel/b.crt\"]\n"
	                               "\n"
	                               "[host.\"b-mirror.example/custom/path\"]\n"
	                               "  override_path = true\n"
	                               "  plain_http = true\n"),
	                 0);
	load(dir, "docker.io", false, &hs);
	assert_int_equal(hs->n_hosts, 4);

	assert_string_equal(hs->hosts[0].scheme, "https");
	assert_string_equal(hs->hosts[0].host, "z-mirror.example");
	assert_string_equal(hs->hosts[0].path, "/v2");
	assert_int_equal(hs->hosts[0].capabilities,
	                 CONTENT_REGISTRY_CAP_PULL | CONTENT_REGISTRY_CAP_RESOLVE);
	assert_false(hs->hosts[0].skip_verify);
	assert_int_equal(hs->hosts[0].n_ca_files, 1);
	assert_int_equal(asprintf(&ca1, "%s/docker.io/z.crt", dir) > 0, 1);
	assert_string_equal(hs->hosts[0].ca_files[0], ca1);
	assert_int_equal(hs->hosts[0].n_headers, 3);
	assert_string_equal(hs->hosts[0].headers[0].name, "x-custom");
	assert_string_equal(hs->hosts[0].headers[0].value, "1");
	assert_string_equal(hs->hosts[0].headers[2].value, "b");

	assert_string_equal(hs->hosts[1].scheme, "http");
	assert_string_equal(hs->hosts[1].host, "a-mirror.example:5000");
	assert_string_equal(hs->hosts[1].path, "/prefix/v2");
	assert_int_equal(hs->hosts[1].capabilities, CONTENT_REGISTRY_CAP_PULL);
	assert_true(hs->hosts[1].skip_verify);
	assert_int_equal(hs->hosts[1].n_ca_files, 2);
	assert_string_equal(hs->hosts[1].ca_files[0], "/abs/a.crt");
	assert_int_equal(asprintf(&ca2, "%s/docker.io/rel/b.crt", dir) > 0, 1);
	assert_string_equal(hs->hosts[1].ca_files[1], ca2);

	assert_string_equal(hs->hosts[2].scheme, "http"); /* plain_http, no scheme given */
	assert_string_equal(hs->hosts[2].host, "b-mirror.example");
	assert_string_equal(hs->hosts[2].path, "/custom/path");
	assert_int_equal(hs->hosts[2].capabilities, ALL_CAPS);

	assert_string_equal(hs->hosts[3].scheme, "https");
	assert_string_equal(hs->hosts[3].host, "registry-1.docker.io");
	assert_int_equal(hs->hosts[3].capabilities, ALL_CAPS);
}

static void test_host_port_dirs(void **state)
{
	const char *dir = *state;

	/* "_default" serves any domain without its own directory */
	assert_int_equal(th_write_file(dir, "_default/hosts.toml",
	                               "[host.\"https://default-mirror\"]\n"
	                               "  capabilities = [\"pull\"]\n"),
	                 0);
	{
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		load(dir, "reg.example:5000", false, &hs);
		assert_int_equal(hs->n_hosts, 2);
		assert_string_equal(hs->hosts[0].host, "default-mirror");
		/* no server: the domain itself, every capability */
		assert_string_equal(hs->hosts[1].scheme, "https");
		assert_string_equal(hs->hosts[1].host, "reg.example:5000");
		assert_int_equal(hs->hosts[1].capabilities, ALL_CAPS);
	}
	/* "host:port" beats _default, and "host_port_" beats "host:port" */
	assert_int_equal(
	        th_write_file(dir, "reg.example:5000/hosts.toml", "server = \"https://colon\"\n"),
	        0);
	{
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		load(dir, "reg.example:5000", false, &hs);
		assert_int_equal(hs->n_hosts, 1);
		assert_string_equal(hs->hosts[0].host, "colon");
	}
	assert_int_equal(th_write_file(dir, "reg.example_5000_/hosts.toml",
	                               "server = \"underscore:1234\"\nskip_verify = true\n"),
	                 0);
	{
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		load(dir, "reg.example:5000", false, &hs);
		assert_int_equal(hs->n_hosts, 1);
		assert_string_equal(hs->hosts[0].scheme, "https");
		assert_string_equal(hs->hosts[0].host, "underscore:1234");
		assert_true(hs->hosts[0].skip_verify);
	}
	/* root plain_http without server: the domain over http */
	assert_int_equal(th_write_file(dir, "plain.example/hosts.toml", "plain_http = true\n"), 0);
	{
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		load(dir, "plain.example", false, &hs);
		assert_int_equal(hs->n_hosts, 1);
		assert_string_equal(hs->hosts[0].scheme, "http");
		assert_string_equal(hs->hosts[0].host, "plain.example");
	}
}

static void test_cert_files(void **state)
{
	const char *dir = *state;
	_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;

	assert_int_equal(th_write_file(dir, "certs.example/ca.crt", "x"), 0);
	assert_int_equal(th_write_file(dir, "certs.example/client.cert", "x"), 0);
	assert_int_equal(th_write_file(dir, "certs.example/client.key", "x"), 0);
	load(dir, "certs.example", false, &hs);
	assert_int_equal(hs->n_hosts, 1);
	assert_string_equal(hs->hosts[0].host, "certs.example");
	assert_int_equal(hs->hosts[0].n_ca_files, 1);
	assert_non_null(strstr(hs->hosts[0].ca_files[0], "certs.example/ca.crt"));
	assert_non_null(strstr(hs->hosts[0].client_cert, "client.cert"));
	assert_non_null(strstr(hs->hosts[0].client_key, "client.key"));
}

static void test_bad_files(void **state)
{
	const char *dir = *state;
	struct {
		const char *content, *msg;
	} cases[] = {
	        {"[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n",
	         "unknown capability \"fly\""},
	        {"server = 5\n", "\"server\" must be a string"},
	        {"[host.\"https://m\"]\nca = 5\n", "\"ca\" must be a string or an array"},
	        {"[host.\"https://m\"]\nskip_verify = \"yes\"\n",
	         "\"skip_verify\" must be a boolean"},
	        {"server = \n", "hosts.toml"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_(content_registry_hosts_freep) struct content_registry_hosts *hs = NULL;
		_cleanup_error_ struct strata_error *err = NULL;
		char domain[32];
		snprintf(domain, sizeof(domain), "bad%zu.example", i);
		_cleanup_free_ char *name = NULL;
		assert_true(asprintf(&name, "%s/hosts.toml", domain) > 0);
		assert_int_equal(th_write_file(dir, name, cases[i].content), 0);
		assert_true(content_registry_hosts_load(dir, domain, false, &hs, &err) < 0);
		if (!strstr(strata_error_message(err), cases[i].msg))
			print_error("%s\n", strata_error_message(err));
		assert_non_null(strstr(strata_error_message(err), cases[i].msg));
		assert_non_null(strstr(strata_error_message(err), domain));
	}
}

static void test_docker_config(void **state)
{
	const char *dir = *state;
	char *user = NULL, *pass = NULL;
	_cleanup_error_ struct strata_error *err = NULL;

	/* no file: no credentials, no error */
	assert_int_equal(content_registry_docker_credentials(dir, "x", &user, &pass, NULL), 0);

	/* "alice:s3cr:et" and "bob:pw" */
	assert_int_equal(
	        th_write_file(
	                dir, "config.json",
	                "{\"auths\": {"
	                "\"https://index.docker.io/v1/\": {\"auth\": \"aHViOmh1YnB3\"},"
	                "\"reg.example:5000\": {\"auth\": \"YWxpY2U6czNjcjpldA==\"},"
	                "\"https://other.example\": {\"username\": \"bob\", \"password\": \"pw\"},"
	                "\"broken.example\": {\"auth\": \"bm9jb2xvbg==\"},"
	                "\"token.example\": {\"identitytoken\": \"x\"}"
	                "}}"),
	        0);
	assert_int_equal(
	        content_registry_docker_credentials(dir, "reg.example:5000", &user, &pass, NULL),
	        1);
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "s3cr:et");
	free(user);
	free(pass);
	assert_int_equal(
	        content_registry_docker_credentials(dir, "other.example", &user, &pass, NULL), 1);
	assert_string_equal(user, "bob");
	assert_string_equal(pass, "pw");
	free(user);
	free(pass);
	/* docker.io's key is https://index.docker.io/v1/, any hub alias finds it */
	assert_int_equal(content_registry_docker_credentials(dir, "registry-1.docker.io", &user,
	                                                     &pass, NULL),
	                 1);
	assert_string_equal(user, "hub");
	assert_string_equal(pass, "hubpw");
	free(user);
	free(pass);
	assert_int_equal(
	        content_registry_docker_credentials(dir, "unknown.example", &user, &pass, NULL), 0);
	assert_int_equal(
	        content_registry_docker_credentials(dir, "token.example", &user, &pass, NULL), 0);
	/* a malformed entry is an error that does not show the secret */
	assert_int_equal(
	        content_registry_docker_credentials(dir, "broken.example", &user, &pass, &err),
	        -EINVAL);
	assert_non_null(strstr(strata_error_message(err), "broken.example"));
	assert_null(strstr(strata_error_message(err), "bm9jb2xvbg"));
	assert_null(strstr(strata_error_message(err), "nocolon"));

	/* DOCKER_CONFIG names the directory when none is given */
	setenv("DOCKER_CONFIG", dir, 1);
	assert_int_equal(
	        content_registry_docker_credentials(NULL, "other.example", &user, &pass, NULL), 1);
	free(user);
	free(pass);
	unsetenv("DOCKER_CONFIG");
}

static void test_challenge(void **state)
{
	struct registry_challenge ch = {0};

	assert_int_equal(registry_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
	                                          "service=\"registry.docker.io\","
	                                          "scope=\"repository:library/busybox:pull\"",
	                                          &ch),
	                 0);
	assert_int_equal(ch.scheme, REGISTRY_AUTH_BEARER);
	assert_string_equal(ch.realm, "https://auth.docker.io/token");
	assert_string_equal(ch.service, "registry.docker.io");
	assert_string_equal(ch.scope, "repository:library/busybox:pull");
	registry_challenge_done(&ch);

	assert_int_equal(registry_challenge_parse("Basic realm=\"Registry Realm\"", &ch), 0);
	assert_int_equal(ch.scheme, REGISTRY_AUTH_BASIC);
	assert_string_equal(ch.realm, "Registry Realm");
	registry_challenge_done(&ch);

	/* several challenges: Bearer preferred; unquoted values */
	assert_int_equal(registry_challenge_parse("Basic realm=x, Bearer realm=https://t/tok,"
	                                          "service=svc",
	                                          &ch),
	                 0);
	assert_int_equal(ch.scheme, REGISTRY_AUTH_BEARER);
	assert_string_equal(ch.realm, "https://t/tok");
	assert_string_equal(ch.service, "svc");
	registry_challenge_done(&ch);

	assert_int_equal(registry_challenge_parse("Negotiate", &ch), -EINVAL);
	assert_int_equal(registry_challenge_parse("Bearer service=x", &ch), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_mirrors, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_host_port_dirs, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_cert_files, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_docker_config, setup, teardown),
	        cmocka_unit_test(test_challenge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
