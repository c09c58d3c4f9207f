// PasstFlow: the flow table and the TCP/UDP/ICMP translation. Arrives with the TCP and UDP issues;
// this file only anchors the module.
import PasstWire
