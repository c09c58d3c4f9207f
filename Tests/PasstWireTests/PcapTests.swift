// pcap: golden file header and record (host byte order), builder round trip.
import Testing
import PasstWire

@Suite struct PcapTests {
    @Test func goldenFileHeaderAndRecord() throws {
        let golden = try Fixture.bytes("l2l4/pcap_file")
        let frame = try L2L4.frame("arp_request")
        #expect(golden.count == 24 + 16 + frame.count)
        try withFrame(golden) { p, n in
            let header = try #require(PcapFileHeader(p, count: n))
            #expect(header.versionMajor == 2 && header.versionMinor == 4)
            #expect(header.thisZone == 0 && header.sigFigs == 0)
            #expect(header.snapLength == 65535)
            #expect(header.linkType == 1)
            let record = try #require(PcapRecordHeader(p + 24, count: n - 24))
            #expect(record.seconds == 1_700_000_000)
            #expect(record.microseconds == 123_456)
            #expect(record.capturedLength == 60 && record.originalLength == 60)
            #expect(L2L4.bytes(record.data, Int(record.capturedLength)) == frame)
        }
    }

    @Test func builderRoundTrip() throws {
        let golden = try Fixture.bytes("l2l4/pcap_file")
        let frame = try L2L4.frame("arp_request")
        let built = L2L4.build { p in
            var n = Pcap.writeFileHeader(to: p)
            n += Pcap.writeRecordHeader(to: p + n, seconds: 1_700_000_000, microseconds: 123_456, length: frame.count)
            return n + L2L4.copy(frame, to: p, at: n)
        }
        #expect(built == golden)
        let explicit = L2L4.build { p in
            Pcap.writeRecordHeader(to: p, seconds: 1, microseconds: 2, capturedLength: 3, originalLength: 4)
        }
        #expect(PcapRecordHeader.parse(explicit + [0, 0, 0]) { [$0.seconds, $0.microseconds, $0.capturedLength, $0.originalLength] }
                == [1, 2, 3, 4])
    }

    @Test func viewsRejectTruncationAndBadMagic() throws {
        let golden = try Fixture.bytes("l2l4/pcap_file")
        for length in 0...golden.count {
            let prefix = Array(golden[0..<length])
            #expect(PcapFileHeader.parse(prefix) { _ in true } == (length >= 24 ? true : nil))
            if length >= 24 {
                #expect(PcapRecordHeader.parse(Array(prefix[24...])) { _ in true } == (length == golden.count ? true : nil))
            }
        }
        var swapped = golden
        swapped[0...3].reverse()
        #expect(PcapFileHeader.parse(swapped) { _ in true } == nil)
    }
}
