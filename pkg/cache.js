// Where the package keeps downloaded models in the Origin Private File System, shared by the page
// side (clearCache) and the worker (downloads): one folder per manifest URL under CACHE_DIR, files
// named by their SHA-256 (complete and verified) or "<sha256>.part" (being downloaded).

export const CACHE_DIR = 'sphinx-cache';

/** The folder name of a manifest URL: the first 32 hex digits of SHA-256(absolute URL). */
export async function cacheKey(absoluteUrl) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(absoluteUrl));
  return [...new Uint8Array(digest)].slice(0, 16).map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The cache folder of a manifest URL (created when `create`), or null. */
export async function cacheFolder(absoluteUrl, create) {
  if (!globalThis.navigator?.storage?.getDirectory) {
    throw new Error('this browser has no Origin Private File System (navigator.storage.getDirectory); the model cannot be stored');
  }
  const root = await navigator.storage.getDirectory();
  try {
    const top = await root.getDirectoryHandle(CACHE_DIR, { create });
    return await top.getDirectoryHandle(await cacheKey(absoluteUrl), { create });
  } catch (e) {
    if (!create && e.name === 'NotFoundError') return null;
    throw e;
  }
}

/** Human-readable byte counts for messages. */
export function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
