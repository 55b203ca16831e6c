/**
 * EtherLink: a Layer-2 VPN for Node.js. Run a virtual Ethernet switch
 * ({@link SwitchServer}) that ports join over UDP, or join one from your app
 * ({@link PortClient}) with a real TAP device ({@link TapDevice}); or use the
 * pieces alone — the learning {@link Switch} forwards between any {@link Port}s.
 *
 * @packageDocumentation
 */

// ---------------------------------------------------------------- running a switch or a port
export {
  SwitchServer,
  DEFAULT_SWITCH_PORT,
  DEFAULT_MAC_MOVE_HOLD_S,
  DEFAULT_MAX_MACS_PER_PORT,
  type SwitchServerOptions,
  type SwitchServerEvents,
  type SwitchServerSnapshot,
  type MemberStatus,
  type PairPathStatus,
  type ListenAddress,
  type PortEventInfo,
  type StreamCounters,
  type NetworkStatus,
  type VxlanStatus,
} from './daemon/switch-server.js';
export {
  VxlanEndpoint,
  VtepPort,
  parseVtepAddress,
  formatVtepAddress,
  checkVni,
  innerFlowHash,
  writeVxlanHeader,
  readVxlanVni,
  VXLAN_PORT,
  VXLAN_HEADER_BYTES,
  VXLAN_OVERHEAD_IPV4,
  VXLAN_OVERHEAD_IPV6,
  VXLAN_SOURCE_PORTS,
  VNI_MAX,
  DEFAULT_UNDERLAY_MTU,
  type VtepAddress,
  type VxlanOptions,
  type VxlanNetwork,
  type VxlanCounters,
  type VtepStatus,
  type VtepChanges,
} from './daemon/vxlan.js';
export { defaultRelayWorkers, MAX_RELAY_WORKERS, RELAY_PASS_UP_QUEUE, type RelayWorkerStatus } from './daemon/relay-workers.js';
export { checkNetworks, mergedAllowList, DEFAULT_NETWORK, NETWORK_NAME_PATTERN, type NetworkSpec } from './daemon/networks.js';
export { PortClient, resolveHost, type PortClientOptions, type PortClientStatus, type PortClientEvents, type PortClientCounters, type PortTransportStatus } from './daemon/port-client.js';
export { TransportPolicy, TRANSPORT_MODES, type TransportKind, type TransportMode, type TransportStatus, type StreamKind, type TransportHost, type TransportPolicyOptions, type SessionView } from './protocol/transport.js';
export { StreamLink, StreamDecoder, type StreamCarrier, type StreamStats } from './io/stream.js';
export type { StreamOrigin, WebSocketListenOptions as StreamWebSocketListenOptions } from './daemon/stream-listener.js';
export { switchStatusReport, portStatusReport, networkReport, type SwitchStatusReport, type SwitchPortReport, type PortStatusReport } from './daemon/status.js';
export { EventLog, EVENT_LOG_CAPACITY, type LiveEvent, type LiveEventKind } from './daemon/events.js';
export { WebServer, parseWebAddress, isLoopback, checkWebAccess, webTokenProblem, loadWebToken, parseWebToken, WEB_CSP, type WebAccess, type WebServerOptions } from './daemon/web.js';

// ---------------------------------------------------------------- keys and membership
export {
  generateKeyPair,
  generatePsk,
  publicKeyOf,
  encodeKey,
  decodeKey,
  readKeyFile,
  writeKeyFile,
  readPsk,
  parseAllowList,
  readAllowFile,
  AllowListError,
  type KeyPair,
  type KeyFile,
  type PskFile,
  type AllowEntry,
  type WriteKeyFileOptions,
} from './crypto/keys.js';
export { TRANSPORT_CIPHERS, DEFAULT_CIPHER, DEFAULT_TAP_MTU, PROTOCOL_VERSION, type TransportCipherName } from './protocol/constants.js';
export type { PortSessionState } from './protocol/port-session.js';
export type { PairCounters, PeerStatus } from './protocol/pair-sessions.js';
export type { CandidateKind, CandidateStatus } from './protocol/paths.js';
export type { SessionCounters } from './protocol/switch-sessions.js';

// ---------------------------------------------------------------- devices, sockets and frames
export { TapDevice, parseCidr, validateTapOptions, MAX_IFNAME, MIN_MTU, MAX_MTU, type TapOptions, type TapStats, type TapDeviceEvents, type ParsedCidr, type LinkState } from './io/tap.js';
export { UdpSocket, type UdpBindOptions, type UdpStats, type DatagramSocket, type DatagramReceiver } from './io/udp.js';
export { MemorySocket, type DatagramSink } from './io/memory-socket.js';
export { createMemoryPortPair, MemoryPort, settle, type MemoryPortCounters } from './io/memory-port.js';
export { encodeAddress, decodeAddress, formatAddress, type DecodedAddress } from './io/address.js';
export { ADDR_SLOT, UdpStat } from './io/native.js';
export { BATCH_SIZE, MutableFrameBatch, batchToBuffers, buffersToBatch, type FrameBatch } from './core/frames.js';
export type { Port, BatchReceiver } from './core/port.js';
export * from './core/ethernet.js';

// ---------------------------------------------------------------- switching
export {
  Switch,
  SwitchPort,
  type SwitchOptions,
  type SwitchSnapshot,
  type TrafficCounters,
  type DropCounters,
  type MacMoveEvent,
  type MacLimitEvent,
  type LinkEvent,
  type MacStatus,
  type PortStatus,
  type PortBlock,
  type StormEvent,
  type PortBlockedEvent,
  type PortUnblockedEvent,
  DEFAULT_STORM_LIMIT,
  FLAP_THRESHOLD,
  FLAP_WINDOW_MS,
  DEFAULT_LOOP_BLOCK_MS,
  LOOP_BLOCK_MAX_MS,
} from './switch/switch.js';
export { parseVlanOptions, formatVlanMode, sameVlanMode, ingressVlan, egressForm, checkVlanMode, TRANSPARENT, VLAN_ID_MIN, VLAN_ID_MAX, type VlanMode, type EgressForm } from './switch/vlan.js';
export { MacTable, LearnResult, type MacEntry, type MacTableOptions, type MacTableCounters, type LimitReason } from './switch/mac-table.js';

// ---------------------------------------------------------------- capture, logs, errors
export { PcapWriter, type PcapOptions, type PcapCounters, type CaptureStatus, type PcapFormat, type PcapState, type PcapWriteOptions } from './daemon/pcap.js';
export { createLogger, silentLogger, LOG_LEVELS, type Logger, type LevelledLogger, type LogLevel, type LogFormat, type LogFields } from './core/log.js';
export { EtherlinkError, errorCode, type EtherlinkErrorDetails } from './core/errors.js';
export {
  InviteBook,
  formatInviteUrl,
  parseInviteUrl,
  inviteProof,
  summarizeInvite,
  DEFAULT_INVITE_EXPIRY_S,
  MAX_INVITE_EXPIRY_S,
  type InviteRecord,
  type InviteRequest,
  type InviteToken,
  type InviteRefusal,
  type InviteSummary,
} from './daemon/invites.js';
