"""Register the follow-up study to the baseline: rigid, then affine, then a local rigid refinement
around the treated lesion. Torch optimisation of a global mutual information (Gaussian Parzen
windows, MONAI's formulation; robust to the contrast change between a tumour and an ablation zone),
multi-resolution, on sampled voxels.

The result maps **follow-up LPS -> baseline LPS** (``matrix``) and its inverse maps the baseline
tumour and its margin into follow-up space: the follow-up images are never warped, so the lesion
cannot be "registered away". Pure: two ``Volume``s in, matrices and numbers out.

Speed (issue 7): intensities are normalised with percentiles of the whole volume but only the
voxels a level reads are normalised and pooled, in slabs (no full-size normalised copy); levels are
pooled once and shared by the rigid and affine stages; box levels (local refinement, within-study
motion) crop the volume first; the fixed image's Parzen weights are computed once per level; the
few-parameter Adam is written out (torch.optim pulls in torch._dynamo, ~1 s of import; MONAI's
loss module pulls in ~1 s more); trilinear sampling and the MI have their gradients written out
(``Trilinear``, ``SampledMI``: the same values and gradients as ``grid_sample`` and MONAI's loss
to float rounding, several times cheaper than autograd's chain and torch's CPU 3D grid sampler);
the CPU work runs on one thread (``_one_cpu_thread``). Several moving images against one fixed
image (the post-contrast phases) are optimised as one batch: the loss is a sum of independent terms
and Adam is element-wise, so each transform follows the path it would follow alone. Runs on CUDA
when present, else on the CPU, with the same code.

Capture range (issue 11): the start no longer depends on where the two studies lie in the scanner.
:mod:`followup.pipelines.registration.initialise` searches translations and rotations exhaustively at ~8 mm
(body mask, a few hundred candidates scored by the same MI in one vectorised pass); the first
level's rigid refinement runs from the best ``STARTS`` distinct candidates at once and the best by
MI after it goes on. The quality label reads figures that separate converged from failed
registrations (``RegistrationResult.figures``, in ``to_json()`` as ``quality_figures``): local NCC
around the lesion, MI normalised by the follow-up's entropy over the part of it inside the
baseline's field of view, the disagreement at the lesion between starts of nearly equal MI, the
local correction and the affine's scaling; the body-mask overlap is reported, not used.

Modules, one job each (a module imports only those above it in this list):

* :mod:`.compute`: the compute device and the one-CPU-thread rule;
* :mod:`.sampling`: intensity normalisation, pooled levels, trilinear interpolation;
* :mod:`.transform`: the batch of rigid / affine transforms being optimised;
* :mod:`.metric`: Parzen-window MI (value and gradient), NCC and normalised MI of matrix batches;
* :mod:`.optimise`: the written-out Adam that maximises the MI;
* :mod:`.box`: rigid alignment inside a box (local refinement, within-study motion);
* :mod:`.initialise`: the global search for starts (body mask, coarse MI search);
* :mod:`.levels`: the pyramid levels and the lesion box the driver and the quality figures share;
* :mod:`.quality`: the quality limits, their calibration, and the figures they judge;
* :mod:`.result`: :class:`~.result.RegistrationResult` and :class:`~.result.Quality`;
* :mod:`.driver`: :func:`~.driver.register`, rigid then affine then local.
"""
