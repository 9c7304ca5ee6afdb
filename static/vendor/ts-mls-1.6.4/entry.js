export {
  createApplicationMessage, createCommit, createGroup, joinGroup, processPrivateMessage, processMessage,
  getCiphersuiteImpl, getCiphersuiteFromName, defaultCapabilities, defaultLifetime, emptyPskIndex,
  generateKeyPackage, generateKeyPackageWithKey, encodeMlsMessage, decodeMlsMessage, zeroOutUint8Array, encodeGroupState,
  decodeGroupState, defaultCryptoProvider,
} from "ts-mls";
export { defaultClientConfig } from "ts-mls/clientConfig.js";
export { getGroupMembers } from "ts-mls/clientState.js";
