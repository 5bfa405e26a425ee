/* SPDX-License-Identifier: Apache-2.0 */
/* grpc.health.v1.Health/Check: SERVING for the server ("") and for every
 * registered service, NOT_FOUND for anything else (as grpc-go's health server
 * answers). Watch is not offered; clients get UNIMPLEMENTED. */
#include <string.h>

#include "proxy-internal.h"
#include "health.pb-c.h"

static int health_check(struct proxy_call *call, const ProtobufCMessage *request, void *userdata,
                        struct strata_error **ret_err)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)request;
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	const struct proxy_server *s = call->server;
	bool known = !req->service || !*req->service;

	/* The service table is immutable while the server runs. */
	for (size_t i = 0; !known && i < s->n_services; i++)
		known = streq(s->services[i].name, req->service);
	if (!known)
		return strata_error_set(ret_err, -ENOENT, "unknown service");
	resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	return proxy_call_send(call, &resp.base);
}

static const struct proxy_method health_methods[] = {
        {"Check", PROXY_UNARY, &grpc__health__v1__health_check_request__descriptor, health_check},
};

int proxy_health_register(struct proxy_server *server, struct strata_error **ret_err)
{
	return proxy_server_register_service(server, "grpc.health.v1.Health", health_methods,
	                                     ELEMENTSOF(health_methods), NULL, ret_err);
}
