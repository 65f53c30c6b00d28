/* common/spiffe.c: see spiffe.h. */
#include "common/spiffe.h"

#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

/* The tag mbedTLS keeps for a URI GeneralName: context-specific, primitive, [6]. */
#define SAN_TAG_URI (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 6)

static bool td_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool seg_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static int check_td(const char *td, size_t len)
{
    if (len == 0 || len > WEIR_SPIFFE_MAX_TD_LEN)
        return WEIR_SPIFFE_ERR_TRUST_DOMAIN;
    for (size_t i = 0; i < len; i++)
        if (!td_char(td[i]))
            return WEIR_SPIFFE_ERR_TRUST_DOMAIN;
    return 0;
}

static int check_segment(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return WEIR_SPIFFE_ERR_SEGMENT;
    for (size_t i = 0; i < len; i++)
        if (!seg_char(s[i]))
            return WEIR_SPIFFE_ERR_SEGMENT;
    return 0;
}

int weir_spiffe_parse(const char *uri, size_t len, weir_spiffe_id_t *out)
{
    static const size_t scheme_len = sizeof(WEIR_SPIFFE_SCHEME) - 1;
    if (uri == NULL || len == 0)
        return WEIR_SPIFFE_ERR_EMPTY;
    if (len > WEIR_SPIFFE_MAX_LEN)
        return WEIR_SPIFFE_ERR_TOO_LONG;
    if (len < scheme_len || memcmp(uri, WEIR_SPIFFE_SCHEME, scheme_len) != 0)
        return WEIR_SPIFFE_ERR_SCHEME;
    /* A query or fragment is named as such, before the character checks would call it a bad
     * trust domain or segment. */
    if (memchr(uri, '?', len) != NULL || memchr(uri, '#', len) != NULL)
        return WEIR_SPIFFE_ERR_QUERY;

    const char *p = uri + scheme_len, *end = uri + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *td_end = slash ? slash : end;
    int rc = check_td(p, (size_t)(td_end - p));
    if (rc != 0)
        return rc;
    weir_spiffe_id_t id = {.td = p, .td_len = (size_t)(td_end - p)};
    if (slash == NULL)
        return WEIR_SPIFFE_ERR_PATH; /* a bare trust domain names no workload */

    /* Exactly four segments: "ns", <ns>, "sa", <sa>. */
    const char *seg[4];
    size_t seg_len[4];
    p = slash + 1;
    for (int i = 0; i < 4; i++) {
        if (p > end)
            return WEIR_SPIFFE_ERR_PATH;
        const char *next = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = next ? next : end;
        seg[i] = p;
        seg_len[i] = (size_t)(seg_end - p);
        if (i < 3 && next == NULL)
            return WEIR_SPIFFE_ERR_PATH;
        if (i == 3 && next != NULL)
            return WEIR_SPIFFE_ERR_PATH;
        p = seg_end + 1;
    }
    if (seg_len[0] != 2 || memcmp(seg[0], "ns", 2) != 0 || seg_len[2] != 2 ||
        memcmp(seg[2], "sa", 2) != 0)
        return WEIR_SPIFFE_ERR_PATH;
    if ((rc = check_segment(seg[1], seg_len[1])) != 0 ||
        (rc = check_segment(seg[3], seg_len[3])) != 0)
        return rc;
    id.ns = seg[1];
    id.ns_len = seg_len[1];
    id.sa = seg[3];
    id.sa_len = seg_len[3];
    if (out != NULL)
        *out = id;
    return 0;
}

const char *weir_spiffe_strerror(int err)
{
    switch (err) {
    case WEIR_SPIFFE_OK:
        return "ok";
    case WEIR_SPIFFE_ERR_EMPTY:
        return "empty SPIFFE ID";
    case WEIR_SPIFFE_ERR_TOO_LONG:
        return "SPIFFE ID longer than 2048 bytes";
    case WEIR_SPIFFE_ERR_SCHEME:
        return "scheme is not spiffe://";
    case WEIR_SPIFFE_ERR_TRUST_DOMAIN:
        return "trust domain must be 1-255 characters of a-z 0-9 . - _";
    case WEIR_SPIFFE_ERR_QUERY:
        return "SPIFFE ID has a query or fragment";
    case WEIR_SPIFFE_ERR_PATH:
        return "path is not /ns/<namespace>/sa/<service-account>";
    case WEIR_SPIFFE_ERR_SEGMENT:
        return "namespace and service account must be characters of A-Z a-z 0-9 . - _ "
               "(not empty, not . or ..)";
    case WEIR_SPIFFE_ERR_NO_URI_SAN:
        return "certificate has no URI SAN";
    case WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN:
        return "certificate has more than one URI SAN";
    case WEIR_SPIFFE_ERR_SPACE:
        return "buffer too small";
    default:
        return "invalid SPIFFE ID";
    }
}

bool weir_spiffe_trust_domain_valid(const char *td)
{
    return td != NULL && check_td(td, strlen(td)) == 0;
}

bool weir_spiffe_in_trust_domain(const weir_spiffe_id_t *id, const char *td)
{
    size_t n = td ? strlen(td) : 0;
    return id != NULL && n != 0 && id->td_len == n && memcmp(id->td, td, n) == 0;
}

int weir_spiffe_format(char *buf, size_t cap, const char *td, const char *ns, const char *sa)
{
    if (td == NULL || ns == NULL || sa == NULL)
        return WEIR_SPIFFE_ERR_EMPTY;
    int rc;
    if ((rc = check_td(td, strlen(td))) != 0 || (rc = check_segment(ns, strlen(ns))) != 0 ||
        (rc = check_segment(sa, strlen(sa))) != 0)
        return rc;
    size_t need = strlen(WEIR_SPIFFE_SCHEME) + strlen(td) + strlen("/ns/") + strlen(ns) +
                  strlen("/sa/") + strlen(sa);
    if (need > WEIR_SPIFFE_MAX_LEN)
        return WEIR_SPIFFE_ERR_TOO_LONG;
    if (buf == NULL || need + 1 > cap)
        return WEIR_SPIFFE_ERR_SPACE;
    char *p = buf;
    const char *parts[] = {WEIR_SPIFFE_SCHEME, td, "/ns/", ns, "/sa/", sa};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t n = strlen(parts[i]);
        memcpy(p, parts[i], n);
        p += n;
    }
    *p = '\0';
    return (int)need;
}

int weir_spiffe_uri_san(const struct mbedtls_x509_crt *crt, const char **uri, size_t *len)
{
    const mbedtls_x509_sequence *found = NULL;
    if (crt != NULL && (crt->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME)) {
        for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next) {
            if (s->buf.p == NULL || s->buf.tag != SAN_TAG_URI)
                continue;
            if (found != NULL)
                return WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN;
            found = s;
        }
    }
    if (found == NULL)
        return WEIR_SPIFFE_ERR_NO_URI_SAN;
    if (uri != NULL)
        *uri = (const char *)found->buf.p;
    if (len != NULL)
        *len = found->buf.len;
    return 0;
}

int weir_spiffe_from_crt(const struct mbedtls_x509_crt *crt, weir_spiffe_id_t *id)
{
    const char *uri;
    size_t len;
    int rc = weir_spiffe_uri_san(crt, &uri, &len);
    if (rc != 0)
        return rc;
    return weir_spiffe_parse(uri, len, id);
}

/* DER length octets for n; returns how many (at most 5), written into out. */
static size_t der_len(size_t n, unsigned char out[5])
{
    if (n < 0x80) {
        out[0] = (unsigned char)n;
        return 1;
    }
    unsigned char tmp[4];
    size_t k = 0;
    for (size_t v = n; v != 0 && k < sizeof(tmp); v >>= 8)
        tmp[k++] = (unsigned char)(v & 0xff);
    out[0] = (unsigned char)(0x80 | k);
    for (size_t i = 0; i < k; i++)
        out[1 + i] = tmp[k - 1 - i];
    return 1 + k;
}

int weir_spiffe_san_der(const char *const *uris, size_t n, unsigned char *buf, size_t cap)
{
    if (uris == NULL || n == 0)
        return WEIR_SPIFFE_ERR_EMPTY;
    unsigned char lb[5];
    size_t body = 0;
    for (size_t i = 0; i < n; i++) {
        size_t ul = uris[i] ? strlen(uris[i]) : 0;
        if (ul == 0)
            return WEIR_SPIFFE_ERR_EMPTY;
        if (ul > WEIR_SPIFFE_MAX_LEN * 8)
            return WEIR_SPIFFE_ERR_TOO_LONG;
        body += 1 + der_len(ul, lb) + ul;
    }
    size_t total = 1 + der_len(body, lb) + body;
    if (buf == NULL || total > cap || total > (size_t)0x7fffffff)
        return WEIR_SPIFFE_ERR_SPACE;
    unsigned char *p = buf;
    *p++ = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
    size_t k = der_len(body, lb);
    memcpy(p, lb, k);
    p += k;
    for (size_t i = 0; i < n; i++) {
        size_t ul = strlen(uris[i]);
        *p++ = SAN_TAG_URI;
        k = der_len(ul, lb);
        memcpy(p, lb, k);
        p += k;
        memcpy(p, uris[i], ul);
        p += ul;
    }
    return (int)total;
}
