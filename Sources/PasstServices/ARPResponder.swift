// ARP responder (RFC 826): proxy ARP for every address on the guest's link but its own.
//
// Theory of operation: the guest sees passt as the one neighbour that owns every IPv4 address
// except the guest's (spec §4.1): whatever it asks for, the answer is our MAC, so every packet
// it sends to any address, on-link or not, reaches passt. Only Ethernet/IPv4 requests are
// answered (the view rejects other hardware and protocol types, then the opcode must be 1).
// Two kinds of request are ignored, as upstream ignores them:
//
//   - announcements (gratuitous ARP): sender IP == target IP, sender IP not 0.0.0.0; an RFC 5227
//     probe (sender 0.0.0.0) is answered like any request;
//   - requests for the guest's own assigned address: answering would make the guest believe
//     its address is taken (and its duplicate address detection fail).
//
// The reply is the request turned around: opcode 2, sender = (our MAC, requested IP), target =
// the requester's (MAC, IP) from the ARP body, Ethernet destination = the frame's source MAC.
// It is 42 bytes (not padded to 60, as upstream sends it). Nothing is allocated: this runs for
// every ARP frame. IPv4 disabled (no `ipv4` settings) means no ARP answers at all.
import PasstWire

/// Answers ARP requests from the guest.
public enum ARPResponder {
    /// Length of an ARP reply frame: Ethernet header and a 28-byte Ethernet/IPv4 ARP packet.
    public static let replyLength = EthernetFrame.headerLength + ARPPacket.length

    /// Writes the ARP reply to the guest frame `frame` at `out`; returns its length (42), or nil
    /// when the frame is not an answerable ARP request or `capacity` is below 42.
    public static func answer(_ frame: UnsafeRawPointer, count: Int, config: ServiceConfig,
                              into out: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard let ipv4 = config.ipv4, capacity >= replyLength,
              let ethernet = EthernetFrame(frame, count: count), ethernet.etherType == EtherType.arp,
              let arp = ARPPacket(ethernet.payload, count: ethernet.payloadCount),
              arp.operation == ARPOperation.request else { return nil }
        let requesterMAC = ethernet.source, senderMAC = arp.senderMAC
        let senderIP = arp.senderIP, targetIP = arp.targetIP
        if !senderIP.isUnspecified && senderIP == targetIP { return nil }      // announcement
        if targetIP == ipv4.address { return nil }                              // the guest's own address

        EthernetFrame.write(to: out, destination: requesterMAC, source: config.ourMAC, etherType: EtherType.arp)
        ARPPacket.write(to: out + EthernetFrame.headerLength, operation: ARPOperation.reply,
                        senderMAC: config.ourMAC, senderIP: targetIP, targetMAC: senderMAC, targetIP: senderIP)
        return replyLength
    }
}
