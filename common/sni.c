/* common/sni.c: see sni.h. The ClientHello layout is RFC 8446 4.1.2 (the same in TLS 1.2,
 * RFC 5246 7.4.1.2); server_name is RFC 6066 3. */
#include "common/sni.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const unsigned char *p;
    size_t left;
} reader_t;

static bool take(reader_t *r, size_t n, const unsigned char **out)
{
    if (r->left < n)
        return false;
    if (out)
        *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static bool u8(reader_t *r, size_t *v)
{
    const unsigned char *b;
    if (!take(r, 1, &b))
        return false;
    *v = b[0];
    return true;
}

static bool u16(reader_t *r, size_t *v)
{
    const unsigned char *b;
    if (!take(r, 2, &b))
        return false;
    *v = (size_t)b[0] << 8 | b[1];
    return true;
}

static bool u24(reader_t *r, size_t *v)
{
    const unsigned char *b;
    if (!take(r, 3, &b))
        return false;
    *v = (size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2];
    return true;
}

/* A length-prefixed vector as a sub-reader. */
static bool vec(reader_t *r, size_t len_bytes, reader_t *sub)
{
    size_t n;
    bool ok = len_bytes == 1 ? u8(r, &n) : len_bytes == 2 ? u16(r, &n) : u24(r, &n);
    if (!ok || !take(r, n, &sub->p))
        return false;
    sub->left = n;
    return true;
}

static weir_sni_result_t server_name(reader_t ext, char *out, size_t outlen)
{
    reader_t list;
    if (!vec(&ext, 2, &list))
        return WEIR_SNI_NOT_TLS;
    while (list.left > 0) {
        size_t type;
        reader_t name;
        if (!u8(&list, &type) || !vec(&list, 2, &name))
            return WEIR_SNI_NOT_TLS;
        if (type != 0) /* host_name is the only type defined */
            continue;
        if (name.left == 0 || name.left >= outlen)
            return WEIR_SNI_NOT_TLS;
        for (size_t i = 0; i < name.left; i++) {
            unsigned char c = name.p[i];
            if (c <= 0x20 || c >= 0x7f) /* a host name, not arbitrary bytes */
                return WEIR_SNI_NOT_TLS;
            out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        out[name.left] = '\0';
        return WEIR_SNI_FOUND;
    }
    return WEIR_SNI_NONE;
}

weir_sni_result_t weir_sni_parse(const unsigned char *data, size_t len, char *out, size_t outlen)
{
    if (len == 0)
        return WEIR_SNI_NEED_MORE;
    if (data[0] != 0x16) /* handshake record */
        return WEIR_SNI_NOT_TLS;
    if (len < 5)
        return (len < 2 || data[1] == 0x03) ? WEIR_SNI_NEED_MORE : WEIR_SNI_NOT_TLS;
    if (data[1] != 0x03)
        return WEIR_SNI_NOT_TLS;
    size_t record_len = (size_t)data[3] << 8 | data[4];
    if (record_len == 0 || record_len > 16384)
        return WEIR_SNI_NOT_TLS;
    if (len < 5 + record_len) {
        /* enough of the record to see it is a ClientHello? then wait for the rest */
        if (len > 5 && data[5] != 0x01)
            return WEIR_SNI_NOT_TLS;
        return WEIR_SNI_NEED_MORE;
    }
    reader_t r = {data + 5, record_len};
    size_t type, body_len;
    if (!u8(&r, &type) || type != 0x01 || !u24(&r, &body_len))
        return WEIR_SNI_NOT_TLS;
    if (body_len > r.left)
        return WEIR_SNI_NONE; /* continues in another record: not routable by name here */
    reader_t hello = {r.p, body_len}, skip;
    if (!take(&hello, 2 + 32, NULL) ||    /* legacy_version, random */
        !vec(&hello, 1, &skip) ||          /* session id */
        !vec(&hello, 2, &skip) ||          /* cipher suites */
        !vec(&hello, 1, &skip))            /* compression methods */
        return WEIR_SNI_NOT_TLS;
    if (hello.left == 0)
        return WEIR_SNI_NONE; /* no extensions at all */
    reader_t exts;
    if (!vec(&hello, 2, &exts))
        return WEIR_SNI_NOT_TLS;
    while (exts.left > 0) {
        size_t ext_type;
        reader_t ext;
        if (!u16(&exts, &ext_type) || !vec(&exts, 2, &ext))
            return WEIR_SNI_NOT_TLS;
        if (ext_type == 0)
            return server_name(ext, out, outlen);
    }
    return WEIR_SNI_NONE;
}
