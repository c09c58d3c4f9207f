// From the daemon's configuration to the services' view of it, and the unsolicited RA schedule.
//
// Theory of operation: the locally answered services (ARP, DHCP, NDP, DHCPv6 in PasstServices)
// are pure functions of a frame and a `ServiceConfig`, which knows nothing of command lines. This
// file builds that value once from the resolved `Configuration` (spec §4.5: the --no-* switches
// and what disabled families imply are already settled there) and the guest MAC found at set-up.
// The tap ingress then keeps its guest-dependent fields current (the guest's MAC from every
// frame; in local mode the IPv6 address from the guest's link-local source). Unsolicited router
// advertisements (spec §4.3) go to ff02::1 at random intervals of 200-600 s; the first deadline
// is only scheduled, as upstream's first timer tick does.
import PasstConfig
import PasstServices
import PasstSys
import PasstWire

enum ServiceBridge {
    /// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC (the DHCPv6 DUID-LLT epoch).
    static let duidEpoch: Int64 = 946_684_800

    /// The services' configuration for `configuration`, the guest at `guestMAC`, started at `now`.
    static func serviceConfig(_ configuration: Configuration, guestMAC: MACAddress, now: WallTime) -> ServiceConfig {
        let options = configuration.options
        let ipv4 = configuration.ipv4.map { settings in
            ServiceConfig.IPv4(address: settings.address, prefixLength: settings.prefixLength, gateway: settings.gateway,
                               ourTapAddress: settings.ourTapAddress, dns: settings.dns)
        }
        let ipv6 = configuration.ipv6.map { settings in
            ServiceConfig.IPv6(address: settings.address, ourLinkLocal: settings.ourLinkLocal, dns: settings.dns)
        }
        return ServiceConfig(
            ourMAC: options.ourMAC, guestMAC: guestMAC, ipv4: ipv4, ipv6: ipv6,
            searchDomains: configuration.searchDomains, mtu: configuration.mtu,
            noDHCP: !configuration.dhcpEnabled, noNDP: !configuration.ndpEnabled,
            noRA: !configuration.routerAdvertisementsEnabled, noDHCPv6: !configuration.dhcpv6Enabled,
            noDHCPDNS: !options.dhcpDNS, noDHCPSearch: !options.dhcpSearch,
            dhcpv6DUIDTime: UInt32(truncatingIfNeeded: max(now.seconds - duidEpoch, 0)))
    }

    /// Nanoseconds until the next unsolicited router advertisement (random, 200-600 s).
    static func nextRouterAdvertisementDelay() -> UInt64 {
        UInt64(NDPResponder.unsolicitedInterval(random: UInt32.random(in: 0...UInt32.max))) * SystemClock.nanosecondsPerSecond
    }
}
