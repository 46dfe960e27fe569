import type { Build } from '../builds/build.js';

/** A build as the HTTP API shows it (DESIGN §6): the stored record plus absolute URLs. */
export interface BuildView extends Omit<Build, 'artifacts' | 'params'> {
  artifacts: { name: string; digest: string; size: number; url: string }[];
  /** the build's parameters by name; `{}` when it has none */
  params: Record<string, string>;
  logUrl: string;
  pageUrl: string;
}

/** Adds the artifact, log and page URLs (under `publicUrl`) to a stored build. */
export function toBuildView(build: Build, publicUrl: string): BuildView {
  const base = publicUrl.replace(/\/+$/, '');
  return {
    ...build,
    params: { ...build.params },
    artifacts: build.artifacts.map((a) => ({ ...a, url: `${base}/api/artifacts/${a.digest}` })),
    logUrl: `${base}/api/builds/${build.id}/log`,
    pageUrl: `${base}/builds/${build.id}`,
  };
}
