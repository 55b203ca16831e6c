// Public API of the etherlink package.
export * from './frames.js';
export type { Port, BatchReceiver } from './port.js';
export * from './ethernet.js';
export { TapDevice, EtherlinkError, parseCidr, validateTapOptions, type TapOptions, type TapStats, MAX_IFNAME, MIN_MTU, MAX_MTU } from './tap.js';
export { UdpSocket, type UdpBindOptions, type UdpStats } from './udp.js';
export { encodeAddress, decodeAddress, formatAddress } from './udp-address.js';
export { MacTable, type MacEntry, type MacTableOptions, type MacTableCounters } from './mac-table.js';
export { Switch, SwitchPort, type SwitchOptions, type SwitchSnapshot, type TrafficCounters, type DropCounters, type MacMoveEvent } from './switch.js';
export { createMemoryPortPair, MemoryPort } from './memory-port.js';
export { SwitchServer, DEFAULT_SWITCH_PORT, type SwitchServerOptions, type SwitchServerSnapshot, type ListenAddress } from './switch-server.js';
export { PortClient, resolveHost, type PortClientOptions, type PortClientStatus } from './port-client.js';
export { DEFAULT_TAP_MTU, PROTOCOL_VERSION } from './protocol/constants.js';
export { receiveFile, sendFile, type TransferResult } from './transfer.js';
export { createLogger, silentLogger, type Logger, type LogLevel, type LogFormat } from './log.js';
export { PcapWriter, type PcapOptions, type PcapCounters, type CaptureStatus } from './pcap.js';
export { ControlServer, controlRequest, daemonCommands, type ControlRequest, type ControlResponse, type ControlCommand } from './control.js';
export { MetricsServer, renderSwitchMetrics, renderPortMetrics, METRICS_CONTENT_TYPE } from './metrics.js';
export { switchStatusReport, portStatusReport, formatSwitchReport, type SwitchStatusReport, type SwitchPortReport, type PortStatusReport } from './status.js';
