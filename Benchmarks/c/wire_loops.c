/* The C side of the micro-benchmark comparison: the same loops as Sources/wire-loops/main.swift,
 * written the way a C networking daemon writes them, compiled with gcc -O2 by compare-c.sh:
 * the Internet checksum, frame classification, and a flow-table lookup.
 * Prints "<name> <nanoseconds per operation>" lines. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Unfolded RFC 1071 sum, 32-bit words into a 64-bit accumulator. */
static uint64_t csum_sum(const uint8_t *p, size_t len, uint64_t acc)
{
	while (len >= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		acc += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t w;
		memcpy(&w, p, 2);
		acc += w;
		p += 2;
		len -= 2;
	}
	if (len)
		acc += *p;
	return acc;
}

static uint16_t csum_fold(uint64_t s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* Classify an Ethernet/IPv4/TCP frame and return a digest of its 5-tuple (0: not IPv4 TCP). */
static uint64_t parse_frame(const uint8_t *f, size_t len)
{
	uint16_t type, tot;
	size_t ihl, doff;
	uint32_t src, dst;
	uint16_t sp, dp;

	if (len < 14 + 20)
		return 0;
	memcpy(&type, f + 12, 2);
	if (ntohs(type) != 0x0800)
		return 0;
	f += 14;
	len -= 14;
	if ((f[0] >> 4) != 4 || (ihl = (f[0] & 0xf) * 4) < 20)
		return 0;
	memcpy(&tot, f + 2, 2);
	if (ntohs(tot) > len || ntohs(tot) < ihl || f[9] != 6)
		return 0;
	memcpy(&src, f + 12, 4);
	memcpy(&dst, f + 16, 4);
	len = ntohs(tot) - ihl;
	f += ihl;
	if (len < 20 || (doff = (f[12] >> 4) * 4) < 20 || doff > len)
		return 0;
	memcpy(&sp, f, 2);
	memcpy(&dp, f + 2, 2);
	return ((uint64_t)ntohl(src) ^ ((uint64_t)ntohl(dst) << 16)) + ntohs(sp) + ((uint64_t)ntohs(dp) << 32) + (len - doff);
}


/* The flow table as passt-style C would have it: open addressing with linear probing over
 * 8-byte buckets (the upper 32 bits of the key's SipHash-2-4 under a 128-bit secret, whose
 * remainder modulo the bucket count is the home bucket, and entry index + 1), the 40-byte keys
 * and their references in an array of entries: the same layout and load as PasstFlow's
 * FlowTable (capacity 131071, capacity * 10 / 7 + 1 buckets). */
struct flow_key {
	uint8_t proto, pif;
	uint16_t our_port, endpoint_port;
	uint8_t our_addr[16], endpoint_addr[16];
};

struct flow_entry {
	struct flow_key key;
	uint32_t ref;
};

struct flow_table {
	uint64_t *buckets;	/* tag << 32 | (entry + 1), 0: empty */
	struct flow_entry *entries;
	size_t n, used;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

/* SipHash-2-4 of five 64-bit words (40 bytes, no tail). */
static uint64_t siphash_5w(uint64_t k0, uint64_t k1, const uint64_t w[5])
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t b = (uint64_t)40 << 56;
	int i;

	for (i = 0; i < 5; i++) {
		v3 ^= w[i];
		SIPROUND; SIPROUND;
		v0 ^= w[i];
	}
	v3 ^= b;
	SIPROUND; SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND; SIPROUND; SIPROUND; SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t flow_hash(const struct flow_key *k, uint64_t k0, uint64_t k1)
{
	uint64_t w[5];

	memcpy(&w[0], k->our_addr, 16);
	memcpy(&w[2], k->endpoint_addr, 16);
	w[4] = k->proto | (uint64_t)k->pif << 8 | (uint64_t)k->our_port << 16 |
	       (uint64_t)k->endpoint_port << 32;
	return siphash_5w(k0, k1, w);
}

static int flow_key_eq(const struct flow_key *a, const struct flow_key *b)
{
	return a->proto == b->proto && a->pif == b->pif && a->our_port == b->our_port &&
	       a->endpoint_port == b->endpoint_port &&
	       !memcmp(a->our_addr, b->our_addr, 16) && !memcmp(a->endpoint_addr, b->endpoint_addr, 16);
}

/* Lookup: the reference of key, or UINT32_MAX if absent. */
static uint32_t flow_lookup(const struct flow_table *t, const struct flow_key *k, uint64_t k0, uint64_t k1)
{
	uint32_t tag = (uint32_t)(flow_hash(k, k0, k1) >> 32);
	size_t i = tag % t->n;
	uint64_t b;

	while ((b = t->buckets[i])) {
		if ((uint32_t)(b >> 32) == tag && flow_key_eq(&t->entries[(uint32_t)b - 1].key, k))
			return t->entries[(uint32_t)b - 1].ref;
		i = i + 1 == t->n ? 0 : i + 1;
	}
	return UINT32_MAX;
}

static void flow_insert(struct flow_table *t, const struct flow_key *k, uint32_t ref, uint64_t k0, uint64_t k1)
{
	uint32_t tag = (uint32_t)(flow_hash(k, k0, k1) >> 32);
	size_t i = tag % t->n, e = t->used++;

	while (t->buckets[i])
		i = i + 1 == t->n ? 0 : i + 1;
	t->entries[e].key = *k;
	t->entries[e].ref = ref;
	t->buckets[i] = (uint64_t)tag << 32 | (e + 1);
}

/* Key number i of the benchmark: TCP on the tap from 198.51.100.(i & 255):(1024 + i / 256) to
 * 192.0.2.1:80, IPv4 as v4-mapped IPv6. */
static void flow_bench_key(struct flow_key *k, uint32_t i)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(k, 0, sizeof(*k));
	k->proto = 6;
	k->pif = 1;
	k->our_port = 80;
	k->endpoint_port = (uint16_t)(1024 + i / 256);
	memcpy(k->our_addr, mapped, 12);
	k->our_addr[12] = 192; k->our_addr[13] = 0; k->our_addr[14] = 2; k->our_addr[15] = 1;
	memcpy(k->endpoint_addr, mapped, 12);
	k->endpoint_addr[12] = 198; k->endpoint_addr[13] = 51; k->endpoint_addr[14] = 100;
	k->endpoint_addr[15] = (uint8_t)i;
}

int main(void)
{
	static uint8_t buf[65536 + 1];
	uint8_t frame[14 + 20 + 20 + 64] = { 0 };
	volatile uint64_t sink = 0;
	double t0, t1;
	int i, n;

	for (i = 0; i < (int)sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);

	n = 20000;
	t0 = now_ns();
	for (i = 0; i < n; i++)
		sink += csum_fold(csum_sum(buf + (i & 1), 65536, (uint64_t)i));
	t1 = now_ns();
	printf("checksum_64k %.1f\n", (t1 - t0) / n);

	frame[12] = 0x08;
	frame[14] = 0x45;
	frame[16] = 0;
	frame[17] = 20 + 20 + 64;
	frame[23] = 6;
	frame[26] = 192; frame[29] = 2;
	frame[30] = 192; frame[33] = 1;
	frame[34 + 12] = 0x50;
	n = 50000000;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		frame[34 + 1] = (uint8_t)i;	/* vary the source port so the loop cannot be hoisted */
		sink += parse_frame(frame, sizeof(frame));
	}
	t1 = now_ns();
	printf("parse_ipv4_tcp %.2f\n", (t1 - t0) / n);

	{
		const size_t capacity = 131071, buckets = capacity * 10 / 7 + 1, keys = 100000;
		const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
		struct flow_table table = { calloc(buckets, sizeof(uint64_t)), calloc(capacity, sizeof(struct flow_entry)),
					    buckets, 0 };
		struct flow_key *all = malloc(keys * sizeof(*all));
		size_t j;

		for (j = 0; j < keys; j++) {
			flow_bench_key(&all[j], (uint32_t)j);
			flow_insert(&table, &all[j], (uint32_t)j, k0, k1);
		}
		n = 10000000;
		t0 = now_ns();
		for (i = 0; i < n; i++)
			sink += flow_lookup(&table, &all[((size_t)i * 7919) % keys], k0, k1);
		t1 = now_ns();
		printf("flow_lookup %.2f\n", (t1 - t0) / n);
		free(all);
		free(table.entries);
		free(table.buckets);
	}
	return sink == 42;
}
