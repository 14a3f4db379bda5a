/**
 * TFTP numbers and names: opcodes (RFC 1350 §5, RFC 2347 for OACK), error codes (RFC 1350
 * Appendix, RFC 2347 for 8) and transfer modes (RFC 1350 §1). No bare numbers elsewhere: every
 * use names the code, and the name tables serve logs.
 */

/** RFC 1350 §5 "TFTP Packets"; OACK is RFC 2347 §2. */
export const Opcode = {
  RRQ: 1,
  WRQ: 2,
  DATA: 3,
  ACK: 4,
  ERROR: 5,
  OACK: 6,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];
export const OpcodeName: Record<Opcode, string> = {
  1: 'RRQ',
  2: 'WRQ',
  3: 'DATA',
  4: 'ACK',
  5: 'ERROR',
  6: 'OACK',
};

/** True for the six opcodes above. */
export function isOpcode(value: number): value is Opcode {
  return Number.isInteger(value) && value >= Opcode.RRQ && value <= Opcode.OACK;
}

/** RFC 1350 Appendix "Error Codes"; 8 is RFC 2347 §2 (option negotiation refused). */
export const TftpErrorCode = {
  /** "Not defined, see error message (if any)." */
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  /** "Disk full or allocation exceeded." */
  DISK_FULL: 3,
  /** "Illegal TFTP operation." */
  ILLEGAL_OPERATION: 4,
  /** "Unknown transfer ID." */
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  /** RFC 2347: "the transfer should be terminated due to option negotiation." */
  OPTION_REFUSED: 8,
} as const;
export type TftpErrorCode = (typeof TftpErrorCode)[keyof typeof TftpErrorCode];
export const TftpErrorCodeName: Record<TftpErrorCode, string> = {
  0: 'not defined',
  1: 'file not found',
  2: 'access violation',
  3: 'disk full or allocation exceeded',
  4: 'illegal TFTP operation',
  5: 'unknown transfer ID',
  6: 'file already exists',
  7: 'no such user',
  8: 'option negotiation refused',
};

/** Name of an error code for logs; peers may send codes outside 0–8. */
export function tftpErrorName(code: number): string {
  return TftpErrorCodeName[code as TftpErrorCode] ?? `code ${code}`;
}

/** RFC 1350 §1 transfer modes, compared case-insensitively ("NETASCII", "Octet" are valid). */
export const TransferMode = {
  NETASCII: 'netascii',
  OCTET: 'octet',
  /** Obsolete (RFC 1350 §1: "should not be implemented"); pxeha refuses it. */
  MAIL: 'mail',
} as const;
export type TransferMode = (typeof TransferMode)[keyof typeof TransferMode];

/** RFC 1350 §2: without the blksize option (RFC 2348) every DATA block holds 512 bytes. */
export const DEFAULT_BLOCK_SIZE_BYTES = 512;

/** Block numbers are 16 bits on the wire (RFC 1350 §5); past 65535 they wrap to 0. */
export const BLOCK_NUMBER_MODULUS = 0x10000;
