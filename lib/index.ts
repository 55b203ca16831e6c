// Public API of the etherlink package.
export * from './core/frames.js';
export type { Port, BatchReceiver } from './core/port.js';
export * from './core/ethernet.js';
export { TapDevice, EtherlinkError, parseCidr, validateTapOptions, type TapOptions, type TapStats, MAX_IFNAME, MIN_MTU, MAX_MTU } from './io/tap.js';
export { UdpSocket, type UdpBindOptions, type UdpStats } from './io/udp.js';
export { encodeAddress, decodeAddress, formatAddress } from './io/address.js';
export { MacTable, type MacEntry, type MacTableOptions, type MacTableCounters } from './switch/mac-table.js';
export { Switch, SwitchPort, type SwitchOptions, type SwitchSnapshot, type TrafficCounters, type DropCounters, type MacMoveEvent } from './switch/switch.js';
export { createMemoryPortPair, MemoryPort } from './io/memory-port.js';
export { SwitchServer, DEFAULT_SWITCH_PORT, type SwitchServerOptions, type SwitchServerSnapshot, type ListenAddress } from './daemon/switch-server.js';
export { PortClient, resolveHost, type PortClientOptions, type PortClientStatus } from './daemon/port-client.js';
export { DEFAULT_TAP_MTU, PROTOCOL_VERSION } from './protocol/constants.js';
export { createLogger, silentLogger, type Logger, type LogLevel, type LogFormat } from './core/log.js';
export { PcapWriter, type PcapOptions, type PcapCounters, type CaptureStatus } from './daemon/pcap.js';
export { ControlServer, controlRequest, daemonCommands, type ControlRequest, type ControlResponse, type ControlCommand } from './daemon/control.js';
export { MetricsServer, renderSwitchMetrics, renderPortMetrics, METRICS_CONTENT_TYPE } from './daemon/metrics.js';
export { switchStatusReport, portStatusReport, formatSwitchReport, type SwitchStatusReport, type SwitchPortReport, type PortStatusReport } from './daemon/status.js';
