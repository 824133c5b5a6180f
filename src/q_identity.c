/*
 * q_identity.c - identity/graph (our extension): the identity cluster of a
 * distinct_id and the links it was built from (docs/IDENTITY.md).
 */
#include "query_report.h"

#include <stdlib.h>
#include <string.h>

static int qi_str(struct qctx *q, uint32_t sid)
{
	size_t n;
	const char *s = cs_string(q->v, sid, &n);

	return buf_json_str(q->out, s, n) == MP_OK ? 0 : -1;
}

int q_identity_graph(struct qctx *q)
{
	const struct cs_view *v = q->v;
	const char *did = q_param(q, "distinct_id");
	const struct id_link *links;
	size_t n_links, n_ids, i, k = 0;
	uint32_t sid, canon, *ids = NULL;
	int bad = 0;

	if (!did)
		return q_fail(q, 400, "distinct_id is required");
	sid = cs_string_id(v, did, strlen(did));
	canon = sid ? colstore_canonical(v, sid) : 0;
	if (buf_printf(q->out, "{\"status\":\"ok\",\"identity\":\"%s\",\"distinct_id\":",
		       q->proj->identity == CONFIG_IDENTITY_ORIGINAL ? "original" : "simplified") != MP_OK ||
	    buf_json_str(q->out, did, strlen(did)) != MP_OK || buf_append(q->out, ",\"canonical_id\":", 16) != MP_OK)
		return q_oom(q);
	if (!sid) {            /* never seen: a cluster of its own */
		if (buf_json_str(q->out, did, strlen(did)) != MP_OK ||
		    buf_append(q->out, ",\"distinct_ids\":[", 17) != MP_OK ||
		    buf_json_str(q->out, did, strlen(did)) != MP_OK || buf_append(q->out, "],\"links\":[]}", 13) != MP_OK)
			return q_oom(q);
		return 200;
	}
	n_ids = colstore_cluster(v, canon, NULL, 0);
	if (!(ids = malloc(n_ids * sizeof *ids)))
		return q_oom(q);
	colstore_cluster(v, canon, ids, n_ids);
	bad |= qi_str(q, canon) || buf_append(q->out, ",\"distinct_ids\":[", 17) != MP_OK;
	for (i = 0; i < n_ids && !bad; i++)
		bad |= (i && buf_putc(q->out, ',') != MP_OK) || qi_str(q, ids[i]);
	free(ids);
	bad |= buf_append(q->out, "],\"links\":[", 11) != MP_OK;
	n_links = colstore_links(v, &links);
	for (i = 0; i < n_links && !bad; i++) {
		const struct id_link *l = &links[i];

		if (colstore_canonical(v, l->a) != canon && colstore_canonical(v, l->b) != canon)
			continue;
		bad |= buf_printf(q->out, "%s{\"type\":\"%s\",\"from\":", k++ ? "," : "",
				  identity_kind_name(l->kind)) != MP_OK ||
		       qi_str(q, l->a) || buf_append(q->out, ",\"to\":", 6) != MP_OK || qi_str(q, l->b) ||
		       buf_printf(q->out, ",\"time\":%lld,\"status\":\"%s\"", (long long)l->t,
				  l->fail ? "refused" : "merged") != MP_OK ||
		       (l->fail && buf_printf(q->out, ",\"reason\":\"%s\"", identity_fail_name(l->fail)) != MP_OK) ||
		       buf_putc(q->out, '}') != MP_OK;
	}
	if (bad || buf_append(q->out, "]}", 2) != MP_OK)
		return q_oom(q);
	return 200;
}
