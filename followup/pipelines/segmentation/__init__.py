"""Segment the ablation zone, its rim and nodular enhancing foci in the follow-up ROI.

* Ablation zone: the non-enhancing "black hole" around the treated site. Rays are cast from the
  zone's centre as found in the follow-up (:mod:`followup.pipelines.zone_search`; the mapped
  tumour centre when none is given); each stops where enhancement starts (the rim) or where the
  pre-contrast signal leaves the zone's own level; the zone is the star-shaped region inside the
  (median-filtered) ray lengths; at a rim thinner than the blur of coarse voxels the edge is
  corrected for it (:func:`.edge._thin_rim_edge`, :func:`.edge.curvature_shift_mm`). The smallest
  margin is the distance from the mapped tumour's centre to the zone's edge, smallest over all
  directions, minus the tumour's radius.
* Rim: the enhancing shell just outside the zone: its thickness along each ray and its kinetics.
  The benign "cryohalo" is thin, smooth, slow and persistent.
* Foci: connected enhancing regions in or at the edge of the zone (from 5 mm inside to 10 mm
  outside its edge) with a medium or fast initial enhancement that are thicker than the rim
  (nodular, not part of a thin uniform rim); each with volume, largest diameter, peak
  enhancement, SER, curve type and distance to the zone's edge.
* Non-mass enhancement: enhancement that is not a mass, at or extending from the zone's edge
  beyond the rim (linear, segmental, clumped: how in-situ disease looks), with its distribution,
  internal pattern, extent and kinetics, and whether it is a benign look-alike.
Pure numpy/scipy: ROI arrays, their affine and the mapped lesion in; masks and numbers out.

Modules, one job each (a module imports only those above it in this list):

* :mod:`.model`: :class:`~.model.Zone`, :class:`~.model.Rim`, :class:`~.model.Focus` and
  :class:`~.model.Segmentation`, the results;
* :mod:`.grid`: voxel positions, interpolated samples, index boxes and mean curves on the ROI grid;
* :mod:`.rays`: the rays' directions, step and reach, and helpers along them;
* :mod:`.edge`: where the zone's edge lies along a ray at a rim (faint rims, thin rims, curvature);
* :mod:`.zone`: :func:`~.zone.segment_zone`, the zone grown by rays, its margin and edge distances;
* :mod:`.rim`: :func:`~.rim.segment_rim`, the rim's thickness and kinetics;
* :mod:`.lobes`: a focus's lobes, its mass core and its thickness at half its peak (fine grid);
* :mod:`.focus`: one focus measured and judged (nodular, suspicious);
* :mod:`.standout`: the cores of a region that stand out of the background enhancement it holds;
* :mod:`.foci`: :func:`~.foci.find_foci`, the tissue floor and the splitting of regions;
* :mod:`.nme`: :func:`~.nme.find_nme`, non-mass enhancement at or extending from the site, described
  with the BI-RADS lexicon and checked against its benign look-alikes;
* :mod:`.driver`: :func:`~.driver.segment`, zone then rim then foci then non-mass enhancement.
"""
