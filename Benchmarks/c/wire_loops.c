/* The C side of the micro-benchmark comparison: the same loops as Sources/wire-loops/main.swift,
 * written the way a C networking daemon writes them, compiled with gcc -O2 by compare-c.sh.
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
	return sink == 42;
}
