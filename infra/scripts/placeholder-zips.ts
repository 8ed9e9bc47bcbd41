/**
 * Writes placeholder Lambda bundles `<dir>/quarry-<fn>/bootstrap.zip` so the app
 * can be synthesized offline before the Rust functions are built. Each zip holds
 * one `bootstrap` script that exits 1: deployed by mistake, it fails loudly.
 * Never commit its output. Usage: tsx scripts/placeholder-zips.ts DIR
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { FUNCTIONS } from '../lib/config';

const PLACEHOLDER = '#!/bin/sh\necho "placeholder bundle from infra/scripts/placeholder-zips.ts: build with cargo lambda" >&2\nexit 1\n';

/** A one-file zip archive (stored, no compression), file mode 0755. */
export function zipOneFile(name: string, content: Buffer): Buffer {
  const nameBuf = Buffer.from(name, 'utf8');
  const crc = zlib.crc32(content);
  const dosTime = 0; // 00:00:00
  const dosDate = (1980 - 1980) << 9 | 1 << 5 | 1; // 1980-01-01, fixed so the bytes never change

  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4); // version needed
  local.writeUInt16LE(0, 6); // flags
  local.writeUInt16LE(0, 8); // stored
  local.writeUInt16LE(dosTime, 10);
  local.writeUInt16LE(dosDate, 12);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(content.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(nameBuf.length, 26);
  local.writeUInt16LE(0, 28);

  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(0x0314, 4); // made by: Unix, spec 2.0
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(0, 8);
  central.writeUInt16LE(0, 10);
  central.writeUInt16LE(dosTime, 12);
  central.writeUInt16LE(dosDate, 14);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(content.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(nameBuf.length, 28);
  central.writeUInt16LE(0, 30); // extra
  central.writeUInt16LE(0, 32); // comment
  central.writeUInt16LE(0, 34); // disk
  central.writeUInt16LE(0, 36); // internal attributes
  central.writeUInt32LE(((0o100755 << 16) >>> 0), 38); // external: regular file, rwxr-xr-x
  central.writeUInt32LE(0, 42); // offset of the local header

  const localSize = local.length + nameBuf.length + content.length;
  const centralSize = central.length + nameBuf.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(localSize, 16);

  return Buffer.concat([local, nameBuf, content, central, nameBuf, end]);
}

/** Writes the four placeholder bundles under `dir` and returns `dir`. */
export function writePlaceholderZips(dir: string): string {
  const zip = zipOneFile('bootstrap', Buffer.from(PLACEHOLDER, 'utf8'));
  for (const fn of FUNCTIONS) {
    const target = path.join(dir, `quarry-${fn}`);
    fs.mkdirSync(target, { recursive: true });
    fs.writeFileSync(path.join(target, 'bootstrap.zip'), zip);
  }
  // The ingest task's image context: the real Dockerfile over a placeholder bundle.
  const task = path.join(dir, 'quarry-ingest-task');
  fs.mkdirSync(path.join(task, 'bundle'), { recursive: true });
  fs.copyFileSync(path.join(__dirname, '..', 'ingest-task', 'Dockerfile'), path.join(task, 'Dockerfile'));
  fs.writeFileSync(path.join(task, 'bundle', 'bootstrap'), PLACEHOLDER, { mode: 0o755 });
  return dir;
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: tsx scripts/placeholder-zips.ts DIR');
    process.exit(2);
  }
  writePlaceholderZips(path.resolve(dir));
  console.log(`placeholder bundles written under ${path.resolve(dir)}`);
}
