// Placeholder until the PasstSys work lands.
import CPasstShim
