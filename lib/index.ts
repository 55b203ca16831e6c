// Public API of the etherlink package.
export * from './frames.js';
export type { Port, BatchReceiver } from './port.js';
export * from './ethernet.js';
export { TapDevice, EtherlinkError, parseCidr, validateTapOptions, type TapOptions, type TapStats, MAX_IFNAME, MIN_MTU, MAX_MTU } from './tap.js';
export { receiveFile, sendFile, type TransferResult } from './transfer.js';
export { createLogger, silentLogger, type Logger, type LogLevel, type LogFormat } from './log.js';
