/*
 * edgeguard native shard opener: decrypt, authenticate and hash one shard of a model package on a
 * libuv pool thread, in place, into memory the caller owns.
 *
 * Why it exists: Node 20's Decipheriv allocates and copies on every update(), and a worker thread
 * costs some 40 ms of CPU to boot; together they kept verify+decrypt at half the speed of the
 * machine's SHA-256 (docs/benchmarks.md). This file is glue only: the cryptography is OpenSSL's
 * EVP interface, the very library (and build) inside the running node binary, whose symbols it
 * exports to addons. The construction is that of src/crypto/stream.ts and src/model/chunk-opener.ts
 * (CORE), which stays the reference and the fallback when this addon is not built:
 *
 *   chunk i of a package: at headerBytes + i * (chunkSize + 16), ciphertext then 16-byte tag;
 *   nonce = prefix (7) || BE32(i) || last (1, 0x01 on the final chunk else 0x00);
 *   AEAD associated data = SHA-256 of the header (32 bytes);
 *   shard s = chunks [s * shardChunks, min(chunks, (s + 1) * shardChunks)), and the SHA-256 of its
 *   plaintext must equal the signed digest expected[32 s, 32 s + 32) when one is given.
 *
 * No plaintext is handed out before its chunk's tag and its shard's digest verified: the promise
 * resolves with null only then, and on any failure the plaintext written so far is wiped before it
 * resolves with the failure. The key lives in memory malloc'd here and is cleansed by destroy()
 * (and by the finalizer, if destroy was never called).
 *
 * JavaScript interface (src/model/native-opener.ts):
 *   create({ fd, suite, key, prefix, aad, headerBytes, chunkSize, plaintextLength, chunks,
 *            shardChunks, expected }) -> opener (an external)
 *   open(opener, s, out, wipeAfter) -> Promise<null | { code, chunk? , shard?, message? }>
 *     out: a Buffer of at least shardBytes + 16 bytes that receives the plaintext (the tag of the
 *     last chunk is read there too), or null to verify only: the work is then done in a small
 *     per-thread scratch buffer, cleansed after the job; wipeAfter: wipe out even on success.
 *   destroy(opener) -> undefined (no open() may be pending)
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG 16
#define SLICE (64 * 1024) /* decrypt then hash 64 KiB at a time, while it is in the core's cache */

typedef struct {
  int fd;
  int chacha;
  unsigned char key[32];
  unsigned char prefix[7];
  unsigned char aad[32];
  int64_t header_bytes;
  int64_t chunk_size;
  int64_t plaintext_length;
  uint32_t chunks;
  uint32_t shard_chunks;
  uint32_t shards;
  unsigned char *expected; /* 32 * shards bytes, or NULL */
  int destroyed;
  int pending;
} plan_t;

enum { OK = 0, F_TRUNCATED, F_TAMPERED, F_DIGEST, F_IO, F_INTERNAL };

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref out_ref;
  napi_ref plan_ref; /* keeps the opener (and its key) alive while the job runs */
  plan_t *plan;
  uint32_t shard;
  unsigned char *out;
  size_t out_len;
  int wipe_after;
  int failure;
  uint32_t where; /* chunk or shard of the failure */
  int err_no;
} job_t;

#define CHECK(env, call)                                  \
  do {                                                    \
    if ((call) != napi_ok) {                              \
      napi_throw_error((env), "EG_INTERNAL", #call " failed"); \
      return NULL;                                        \
    }                                                     \
  } while (0)

static void plan_cleanse(plan_t *p) {
  if (p->destroyed) return;
  OPENSSL_cleanse(p->key, sizeof p->key);
  OPENSSL_cleanse(p->prefix, sizeof p->prefix);
  free(p->expected);
  p->expected = NULL;
  p->destroyed = 1;
}

static void plan_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  plan_t *p = data;
  plan_cleanse(p);
  free(p);
}

/* Reads exactly len bytes at offset at, retrying short reads; returns what it read (less at end of
 * file), or -1 with errno set on a read error. */
static ssize_t read_full(int fd, unsigned char *buf, size_t len, off_t at) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, buf + got, len - got, at + (off_t)got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/*
 * A pool thread's scratch buffer for verification (no output buffer): the ciphertext is read,
 * decrypted and hashed SLICE bytes at a time in it, so a verify touches 64 KiB per thread instead
 * of a megabyte-sized slot per job. Fresh memory is what costs here: on the benchmark VM, first
 * touching 4 MiB took 12 ms, longer than decrypting and hashing them. Allocated once per thread,
 * cleansed after every job, never freed (libuv's pool threads live as long as the process).
 */
static _Thread_local unsigned char *scratch;

/* Runs on a libuv pool thread: no JavaScript here. */
static void job_execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  plan_t *p = j->plan;
  uint32_t first = j->shard * p->shard_chunks;
  uint32_t end = first + p->shard_chunks;
  if (end > p->chunks) end = p->chunks;
  size_t pos = 0;
  unsigned char nonce[12];
  unsigned char tag[TAG];
  unsigned char digest[32];
  unsigned int digest_len = 0;
  int outl = 0;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  const EVP_CIPHER *cipher = p->chacha ? EVP_chacha20_poly1305() : EVP_aes_256_gcm();
  if (!j->out && !scratch) scratch = malloc(SLICE);
  /* The key is set once per job; each chunk then only sets its nonce. */
  if (!c || !md || (!j->out && !scratch) || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) || !EVP_DecryptInit_ex(c, cipher, NULL, NULL, NULL) ||
      !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) || !EVP_DecryptInit_ex(c, NULL, NULL, p->key, NULL)) {
    j->failure = F_INTERNAL;
    goto fail;
  }
  memcpy(nonce, p->prefix, 7);
  for (uint32_t i = first; i < end; i++) {
    int64_t left = p->plaintext_length - (int64_t)i * p->chunk_size;
    size_t pt_len = (size_t)(left < p->chunk_size ? left : p->chunk_size);
    off_t at = (off_t)(p->header_bytes + (int64_t)i * (p->chunk_size + TAG));
    ssize_t got;
    if (j->out) {
      /* Into the caller's buffer: the whole sealed chunk at once, decrypted in place. */
      if (pos + pt_len + TAG > j->out_len) {
        j->failure = F_INTERNAL;
        goto fail;
      }
      got = read_full(p->fd, j->out + pos, pt_len + TAG, at);
      if (got >= 0 && (size_t)got == pt_len + TAG) memcpy(tag, j->out + pos + pt_len, TAG);
      else if (got >= 0) got = -2;
    } else {
      /* Verification: the tag first (a truncated chunk fails before any work), slices later. */
      got = read_full(p->fd, tag, TAG, at + (off_t)pt_len);
      if (got >= 0 && got != TAG) got = -2;
    }
    if (got == -2) {
      j->failure = F_TRUNCATED;
      j->where = i;
      goto fail;
    }
    if (got < 0) {
      j->failure = F_IO;
      j->err_no = errno;
      goto fail;
    }
    nonce[7] = (unsigned char)(i >> 24);
    nonce[8] = (unsigned char)(i >> 16);
    nonce[9] = (unsigned char)(i >> 8);
    nonce[10] = (unsigned char)i;
    nonce[11] = i == p->chunks - 1 ? 1 : 0;
    if (!EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) || !EVP_DecryptUpdate(c, NULL, &outl, p->aad, 32)) {
      j->failure = F_INTERNAL;
      goto fail;
    }
    /* In place (OpenSSL allows out == in for these AEADs), hashing each slice while it is hot. */
    for (size_t off = 0; off < pt_len; off += SLICE) {
      size_t n = pt_len - off < SLICE ? pt_len - off : SLICE;
      unsigned char *buf = j->out ? j->out + pos + off : scratch;
      if (!j->out) {
        got = read_full(p->fd, buf, n, at + (off_t)off);
        if (got < 0) {
          j->failure = F_IO;
          j->err_no = errno;
          goto fail;
        }
        if ((size_t)got != n) {
          j->failure = F_TRUNCATED;
          j->where = i;
          goto fail;
        }
      }
      if (!EVP_DecryptUpdate(c, buf, &outl, buf, (int)n) || (size_t)outl != n || !EVP_DigestUpdate(md, buf, n)) {
        j->failure = F_INTERNAL;
        goto fail;
      }
    }
    if (!EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG, tag) || EVP_DecryptFinal_ex(c, tag, &outl) <= 0) {
      j->failure = F_TAMPERED;
      j->where = i;
      goto fail;
    }
    pos += pt_len;
  }
  if (!EVP_DigestFinal_ex(md, digest, &digest_len) || digest_len != 32) {
    j->failure = F_INTERNAL;
    goto fail;
  }
  if (p->expected && CRYPTO_memcmp(digest, p->expected + 32 * (size_t)j->shard, 32) != 0) {
    j->failure = F_DIGEST;
    j->where = j->shard;
    goto fail;
  }
  if (j->out) {
    /* The tag bytes after the plaintext are not secret, but leave only plaintext behind. */
    OPENSSL_cleanse(j->out + pos, j->out_len - pos < TAG ? j->out_len - pos : TAG);
    if (j->wipe_after) OPENSSL_cleanse(j->out, pos);
  }
  goto done;
fail:
  /* Everything this job may have written: the plaintext so far and the chunk being read. */
  if (j->out) OPENSSL_cleanse(j->out, j->out_len);
done:
  if (!j->out && scratch) OPENSSL_cleanse(scratch, SLICE);
  OPENSSL_cleanse(nonce, sizeof nonce);
  OPENSSL_cleanse(digest, sizeof digest);
  EVP_CIPHER_CTX_free(c);
  EVP_MD_CTX_free(md);
}

static napi_value make_failure(napi_env env, job_t *j) {
  napi_value o, v;
  const char *code = "EG_INTERNAL";
  switch (j->failure) {
    case F_TRUNCATED: code = "EG_TRUNCATED"; break;
    case F_TAMPERED: code = "EG_TAMPERED"; break;
    case F_DIGEST: code = "EG_DIGEST_MISMATCH"; break;
    case F_IO: code = "EG_IO"; break;
    default: break;
  }
  if (napi_create_object(env, &o) != napi_ok) return NULL;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "code", v);
  if (j->failure == F_TRUNCATED || j->failure == F_TAMPERED) {
    napi_create_uint32(env, j->where, &v);
    napi_set_named_property(env, o, "chunk", v);
  } else if (j->failure == F_DIGEST) {
    napi_create_uint32(env, j->where, &v);
    napi_set_named_property(env, o, "shard", v);
  } else {
    napi_create_string_utf8(env, j->failure == F_IO ? strerror(j->err_no) : "the native decryption failed inside OpenSSL", NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, o, "message", v);
  }
  return o;
}

static void job_complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value result = NULL;
  j->plan->pending--;
  if (status != napi_ok) j->failure = F_INTERNAL;
  if (j->failure == OK) napi_get_null(env, &result);
  else result = make_failure(env, j);
  if (result) napi_resolve_deferred(env, j->deferred, result);
  else {
    napi_value msg, err;
    napi_create_string_utf8(env, "the native decryption could not report its result", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  }
  if (j->out_ref) napi_delete_reference(env, j->out_ref);
  napi_delete_reference(env, j->plan_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return 0;
  return napi_get_named_property(env, obj, name, out) == napi_ok;
}

static int get_i64(napi_env env, napi_value obj, const char *name, int64_t *out) {
  napi_value v;
  return get_prop(env, obj, name, &v) && napi_get_value_int64(env, v, out) == napi_ok;
}

/* Copies exactly len bytes of a Buffer/TypedArray property into dst. */
static int get_bytes(napi_env env, napi_value obj, const char *name, unsigned char *dst, size_t len) {
  napi_value v;
  void *data;
  size_t n;
  if (!get_prop(env, obj, name, &v) || napi_get_buffer_info(env, v, &data, &n) != napi_ok || n != len) return 0;
  memcpy(dst, data, len);
  return 1;
}

static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v, ext;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  plan_t *p = calloc(1, sizeof *p);
  if (!p) {
    napi_throw_error(env, "EG_INTERNAL", "out of memory");
    return NULL;
  }
  int64_t fd, chunks, shard_chunks;
  char suite[32] = {0};
  size_t suite_len = 0;
  napi_valuetype arg_type = napi_undefined;
  int ok = argc == 1 && napi_typeof(env, argv[0], &arg_type) == napi_ok && arg_type == napi_object && get_i64(env, argv[0], "fd", &fd) && get_prop(env, argv[0], "suite", &v) &&
           napi_get_value_string_utf8(env, v, suite, sizeof suite, &suite_len) == napi_ok &&
           get_bytes(env, argv[0], "key", p->key, 32) && get_bytes(env, argv[0], "prefix", p->prefix, 7) &&
           get_bytes(env, argv[0], "aad", p->aad, 32) && get_i64(env, argv[0], "headerBytes", &p->header_bytes) &&
           get_i64(env, argv[0], "chunkSize", &p->chunk_size) && get_i64(env, argv[0], "plaintextLength", &p->plaintext_length) &&
           get_i64(env, argv[0], "chunks", &chunks) && get_i64(env, argv[0], "shardChunks", &shard_chunks);
  if (ok) {
    p->fd = (int)fd;
    p->chacha = strcmp(suite, "chacha20-poly1305") == 0;
    /* chunks must be what the length implies (at least one: an empty model has one empty chunk),
       so that no chunk's length computed in job_execute can go negative. */
    int64_t implied = p->chunk_size > 0 && p->plaintext_length >= 0 && p->plaintext_length <= ((int64_t)1 << 53)
                          ? (p->plaintext_length + p->chunk_size - 1) / p->chunk_size
                          : -1;
    if (implied == 0) implied = 1;
    ok = (p->chacha || strcmp(suite, "aes-256-gcm") == 0) && p->chunk_size > 0 && p->chunk_size <= INT32_MAX - TAG && chunks > 0 &&
         chunks <= UINT32_MAX && chunks == implied && shard_chunks > 0 && shard_chunks <= UINT32_MAX && p->header_bytes >= 0 &&
         p->plaintext_length >= 0;
  }
  if (ok) {
    p->chunks = (uint32_t)chunks;
    p->shard_chunks = (uint32_t)shard_chunks;
    p->shards = (uint32_t)((chunks + shard_chunks - 1) / shard_chunks);
    napi_value e;
    napi_valuetype t = napi_undefined;
    if (get_prop(env, argv[0], "expected", &e)) napi_typeof(env, e, &t);
    if (t != napi_undefined && t != napi_null) {
      void *data;
      size_t n;
      ok = napi_get_buffer_info(env, e, &data, &n) == napi_ok && n == 32 * (size_t)p->shards && (p->expected = malloc(n)) != NULL;
      if (ok) memcpy(p->expected, data, n);
    }
  }
  if (!ok) {
    plan_cleanse(p);
    free(p);
    napi_throw_type_error(env, "EG_INTERNAL", "native shard opener: invalid plan");
    return NULL;
  }
  if (napi_create_external(env, p, plan_finalize, NULL, &ext) != napi_ok) {
    plan_cleanse(p);
    free(p);
    napi_throw_error(env, "EG_INTERNAL", "napi_create_external failed");
    return NULL;
  }
  return ext;
}

static plan_t *get_plan(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

static napi_value open_shard(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], promise, name;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  plan_t *p = argc == 4 ? get_plan(env, argv[0]) : NULL;
  uint32_t s = 0;
  bool wipe_after = false;
  void *out = NULL;
  size_t out_len = 0;
  napi_valuetype out_type = napi_undefined;
  int has_out = argc == 4 && napi_typeof(env, argv[2], &out_type) == napi_ok && out_type != napi_null;
  if (!p || p->destroyed || napi_get_value_uint32(env, argv[1], &s) != napi_ok || s >= p->shards ||
      (has_out && (napi_get_buffer_info(env, argv[2], &out, &out_len) != napi_ok || out_len == 0)) ||
      napi_get_value_bool(env, argv[3], &wipe_after) != napi_ok) {
    napi_throw_type_error(env, "EG_INTERNAL", "native shard opener: invalid open() arguments");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, "EG_INTERNAL", "out of memory");
    return NULL;
  }
  j->plan = p;
  j->shard = s;
  j->out = out;
  j->out_len = out_len;
  j->wipe_after = wipe_after;
  if (napi_create_reference(env, argv[0], 1, &j->plan_ref) != napi_ok ||
      (has_out && napi_create_reference(env, argv[2], 1, &j->out_ref) != napi_ok) || napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "edgeguard:openShard", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, job_execute, job_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->out_ref) napi_delete_reference(env, j->out_ref);
    if (j->plan_ref) napi_delete_reference(env, j->plan_ref);
    if (j->work) napi_delete_async_work(env, j->work);
    free(j);
    napi_throw_error(env, "EG_INTERNAL", "native shard opener: could not queue the work");
    return NULL;
  }
  p->pending++;
  return promise;
}

static napi_value destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  plan_t *p = argc == 1 ? get_plan(env, argv[0]) : NULL;
  if (!p) {
    napi_throw_type_error(env, "EG_INTERNAL", "native shard opener: destroy() needs an opener");
    return NULL;
  }
  if (p->pending > 0) {
    napi_throw_error(env, "EG_INTERNAL", "native shard opener: destroy() while shards are still being opened");
    return NULL;
  }
  plan_cleanse(p);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
    {"open", NULL, open_shard, NULL, NULL, NULL, napi_default, NULL},
    {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
