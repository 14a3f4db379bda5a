/**
 * The one registry of TFTP options pxeha understands, with typed access to the option map of a
 * request or OACK (packet.ts keeps options as `Map<lower-case name, value text>`).
 *
 * RFC 2347 §2: option names and values are NUL-terminated ASCII strings; names are
 * case-insensitive (the codec lower-cases them on decode). Values here are decimal numbers:
 *
 * | option     | RFC       | range                  | meaning                                     |
 * | ---        | ---       | ---                    | ---                                         |
 * | blksize    | 2348      | 8–65464 octets         | DATA payload size; server may answer less   |
 * | tsize      | 2349 §3   | 0–2^53−1 octets        | RRQ sends 0; OACK returns the file size     |
 * | timeout    | 2349 §2   | 1–255 seconds          | retransmission timeout; OACK echoes exactly |
 * | windowsize | 7440 §3   | 1–65535 blocks         | blocks per ACK; server may answer less      |
 *
 * Policy (which value a server grants) is not here: src/tftp/negotiate.ts decides it.
 */

export const OptionName = {
  BLKSIZE: 'blksize',
  TSIZE: 'tsize',
  TIMEOUT: 'timeout',
  WINDOWSIZE: 'windowsize',
} as const;
export type OptionName = (typeof OptionName)[keyof typeof OptionName];

export interface NumericOptionSpec {
  readonly name: OptionName;
  readonly rfc: string;
  readonly min: number;
  readonly max: number;
  readonly unit: 'octets' | 'seconds' | 'blocks';
}

/** Option name → its valid range (the RFC's, before any server policy). */
export const OPTION_SPECS: Readonly<Record<OptionName, NumericOptionSpec>> = {
  blksize: { name: 'blksize', rfc: 'RFC 2348 §2', min: 8, max: 65464, unit: 'octets' },
  tsize: { name: 'tsize', rfc: 'RFC 2349 §3', min: 0, max: Number.MAX_SAFE_INTEGER, unit: 'octets' },
  timeout: { name: 'timeout', rfc: 'RFC 2349 §2', min: 1, max: 255, unit: 'seconds' },
  windowsize: { name: 'windowsize', rfc: 'RFC 7440 §3', min: 1, max: 65535, unit: 'blocks' },
};

/** True for the names in OPTION_SPECS (case-sensitive: the map keys are already lower case). */
export function isKnownOption(name: string): name is OptionName {
  return Object.hasOwn(OPTION_SPECS, name);
}

/** At most 16 digits: anything longer exceeds 2^53 and is refused before Number() rounds it. */
const DECIMAL = /^[0-9]{1,16}$/;

/**
 * The value of a numeric option, or undefined when the text is not a plain decimal number in
 * the option's RFC range. RFC 2347 §2 lets a server ignore an option it cannot accept, so an
 * out-of-range blksize is "not requested", not an error.
 */
export function parseOptionValue(name: OptionName, text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const value = Number(text);
  const spec = OPTION_SPECS[name];
  if (!Number.isSafeInteger(value) || value < spec.min || value > spec.max) return undefined;
  return value;
}

/** The decimal text of an option value, as sent in an OACK (RFC 2347 §2: ASCII digits). */
export function formatOptionValue(value: number): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`option value ${value} is not a non-negative integer`);
  return String(value);
}

/** The typed options of a request (values that do not parse are left out, see parseOptionValue). */
export interface RequestedOptions {
  blksize?: number;
  tsize?: number;
  timeout?: number;
  windowsize?: number;
}

/** Reads the known options out of a request's option map; unknown and invalid ones are skipped. */
export function readRequestedOptions(options: ReadonlyMap<string, string>): RequestedOptions {
  const out: RequestedOptions = {};
  for (const [name, text] of options) {
    if (!isKnownOption(name)) continue;
    const value = parseOptionValue(name, text);
    if (value !== undefined) out[name] = value;
  }
  return out;
}
