import type { ImageReference } from '../../../oci/image-reference.js';
import { assignNames } from './assign-names.js';
import { planDocker } from './plan-docker.js';
import { planOci } from './plan-oci.js';
import type { Plan, PlanSource } from './plan-types.js';

export type { ArchiveFormat, Plan, PlannedImage, PlanSource } from './plan-types.js';

/** Resolves the archive read into images (an OCI layout when it has oci-layout and index.json, else docker-archive) and names them. */
export async function planImport(source: PlanSource, as: ImageReference | undefined): Promise<Plan> {
  const { contents } = source;
  const plan = contents.entry('oci-layout') && contents.entry('index.json') ? await planOci(source) : await planDocker(source);
  assignNames(plan, as);
  return plan;
}
