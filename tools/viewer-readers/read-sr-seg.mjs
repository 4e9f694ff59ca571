// Reads our SR and SEG the way OHIF 3 does, with OHIF's own libraries, and prints what a viewer
// would show as JSON (tests/viewers/test_viewer_readers.py asserts on it).
//
//   node read-sr-seg.mjs --sr sr.dcm --seg seg.dcm --images DIR [--images DIR ...]
//
// * dcmjs 0.52 reads and naturalizes the objects (as OHIF's data sources do).
// * The SR: OHIF 3's DICOM SR SOP-class handler (extensions/cornerstone-dicom-sr,
//   getSopClassHandlerModule.ts, release 3.13.13), reproduced below step by step: the TID 1500
//   check, the Image Library, the measurement groups merged by Tracking Unique Identifier, TID 1410
//   and non-geometric measurements, the matching of each measurement's first coordinate to an image
//   of a display set (where a group without image coordinates stops OHIF), the conversion of each
//   graphic to patient coordinates (OHIF's getRenderableData), isRehydratable, and the hydration
//   by @cornerstonejs/adapters 5.14 MeasurementReport.generateToolState.
// * The SEG: @cornerstonejs/adapters' Segmentation.createFromDICOMSegBuffer (what OHIF's
//   cornerstone-dicom-seg extension calls), each segment's voxels counted, its colour converted
//   with dcmjs' dicomlab2RGB as OHIF does.
// Any exception ends the run with a non-zero exit status and the message on stderr.

import fs from 'node:fs';
import path from 'node:path';
import dcmjs from 'dcmjs';
import * as cs from '@cornerstonejs/core';
import { adaptersSR, adaptersSEG } from '@cornerstonejs/adapters';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const { MeasurementReport } = adaptersSR.Cornerstone3D;

// --- arguments and files -----------------------------------------------------------------------
function parseArgs(argv) {
  const args = { images: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (key === 'images') args.images.push(argv[i + 1]);
    else args[key] = argv[i + 1];
  }
  return args;
}

function readDicom(file) {
  const buf = fs.readFileSync(file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const dicom = DicomMessage.readFile(ab);
  const ds = DicomMetaDictionary.naturalizeDataset(dicom.dict);
  ds._meta = DicomMetaDictionary.namifyDataset(dicom.meta);
  return { ds, arrayBuffer: ab };
}

const asArray = x => (x ? (Array.isArray(x) ? x : [x]) : []);
const first = x => (Array.isArray(x) ? x[0] : x);

// --- images and a metadata provider (what OHIF's DicomMetadataStore gives Cornerstone) ----------
const images = new Map(); // imageId -> naturalized header
function loadImages(dirs) {
  for (const dir of dirs) {
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      if (!fs.statSync(file).isFile()) continue;
      let ds;
      try {
        ds = readDicom(file).ds;
      } catch (e) {
        continue; // not DICOM
      }
      if (!ds.ImagePositionPatient || !ds.SOPInstanceUID) continue;
      images.set(`dicomfile:${ds.SOPInstanceUID}`, ds);
    }
  }
}

function provider(type, imageId) {
  const ds = images.get(imageId);
  if (!ds) return undefined;
  const iop = ds.ImageOrientationPatient.map(Number);
  const spacing = ds.PixelSpacing.map(Number);
  switch (type) {
    case 'instance':
      return ds;
    case 'imagePlaneModule':
      return {
        frameOfReferenceUID: ds.FrameOfReferenceUID,
        rows: ds.Rows,
        columns: ds.Columns,
        imageOrientationPatient: iop,
        rowCosines: iop.slice(0, 3),
        columnCosines: iop.slice(3, 6),
        imagePositionPatient: ds.ImagePositionPatient.map(Number),
        sliceThickness: Number(ds.SliceThickness),
        pixelSpacing: spacing,
        rowPixelSpacing: spacing[0],
        columnPixelSpacing: spacing[1],
      };
    case 'generalSeriesModule':
      return { modality: ds.Modality, seriesInstanceUID: ds.SeriesInstanceUID,
               studyInstanceUID: ds.StudyInstanceUID, seriesNumber: ds.SeriesNumber };
    case 'generalImageModule':
      return { sopInstanceUID: ds.SOPInstanceUID, instanceNumber: ds.InstanceNumber };
    case 'sopCommonModule':
      return { sopClassUID: ds.SOPClassUID, sopInstanceUID: ds.SOPInstanceUID };
    case 'imagePixelModule':
      return { rows: ds.Rows, columns: ds.Columns, bitsAllocated: ds.BitsAllocated, bitsStored: ds.BitsStored,
               highBit: ds.HighBit, pixelRepresentation: ds.PixelRepresentation, samplesPerPixel: ds.SamplesPerPixel,
               photometricInterpretation: ds.PhotometricInterpretation };
    default:
      return undefined;
  }
}

// Display sets as OHIF's default stack handler makes them: one per series, images by position.
function displaySets() {
  const bySeries = new Map();
  for (const [imageId, ds] of images) {
    if (!bySeries.has(ds.SeriesInstanceUID)) bySeries.set(ds.SeriesInstanceUID, []);
    bySeries.get(ds.SeriesInstanceUID).push(imageId);
  }
  const out = [];
  for (const [uid, ids] of bySeries) {
    ids.sort((a, b) => Number(images.get(a).ImagePositionPatient[2]) - Number(images.get(b).ImagePositionPatient[2]));
    out.push({ SeriesInstanceUID: uid, StudyInstanceUID: images.get(ids[0]).StudyInstanceUID,
               sopClassUids: [...new Set(ids.map(i => images.get(i).SOPClassUID))], imageIds: ids,
               displaySetInstanceUID: uid });
  }
  return out;
}

// --- OHIF 3 SR SOP-class handler (cornerstone-dicom-sr/src/getSopClassHandlerModule.ts) -------
const CodeNameCodeSequenceValues = {
  ImagingMeasurementReport: '126000', ImageLibrary: '111028', ImagingMeasurements: '126010',
  MeasurementGroup: '125007', ImageLibraryGroup: '126200', TrackingUniqueIdentifier: '112040',
  TrackingIdentifier: '112039', Finding: '121071', FindingSite: 'G-C0E3', FindingSiteSCT: '363698007',
};
const TEXT_ANNOTATION_POSITION = { value: 'TextPosition', schemeDesignator: '99CS3D' };

function getReferencedImagesList(contentSequence) {
  const library = contentSequence.find(i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.ImageLibrary);
  if (!library) return [];
  const group = asArray(library.ContentSequence).find(
    i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.ImageLibraryGroup);
  if (!group) return [];
  const out = [];
  for (const item of asArray(group.ContentSequence)) {
    for (const ref of asArray(item.ReferencedSOPSequence)) {
      if (ref.ReferencedSOPClassUID) out.push({ ReferencedSOPClassUID: ref.ReferencedSOPClassUID,
                                                ReferencedSOPInstanceUID: ref.ReferencedSOPInstanceUID });
    }
  }
  return out;
}

function coordsOf(item) { // OHIF's _getCoordsFromSCOORDOrSCOORD3D
  const { ValueType, GraphicType, GraphicData } = item;
  return { ValueType, GraphicType, GraphicData,
           ReferencedSOPSequence: item.ContentSequence?.ReferencedSOPSequence,
           ReferencedFrameOfReferenceSequence: item.ReferencedFrameOfReferenceUID || item.ContentSequence?.ReferencedFrameOfReferenceSequence };
}

function labelOf(name, mv) { // OHIF's _getLabelFromMeasuredValueSequence
  const { CodeMeaning } = name;
  const { NumericValue, MeasurementUnitsCodeSequence } = mv;
  const value = NumericValue ? Number(NumericValue).toFixed(2) : '';
  return { label: CodeMeaning, value: `${value} ${MeasurementUnitsCodeSequence.CodeValue}` };
}

function processTID1410(seq) {
  const graphic = seq.find(i => i.ValueType === 'SCOORD' || i.ValueType === 'SCOORD3D');
  const uidItem = seq.find(i => i.ValueType === 'UIDREF');
  const tracking = seq.find(i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.TrackingIdentifier);
  const { CodeValue, CodingSchemeDesignator } = first(graphic.ConceptNameCodeSequence);
  const coords = coordsOf(graphic);
  const is3D = coords.ValueType === 'SCOORD3D';
  const m = { loaded: false, labels: [], coords: [coords], TrackingUniqueIdentifier: uidItem.UID,
              TrackingIdentifier: tracking.TextValue, graphicCode: `${CodingSchemeDesignator}:${CodeValue}`,
              is3DMeasurement: is3D, pointsLength: coords.GraphicData.length / (is3D ? 3 : 2),
              graphicType: coords.GraphicType };
  for (const num of seq.filter(i => i.ValueType === 'NUM')) {
    if (num.MeasuredValueSequence) m.labels.push(labelOf(first(num.ConceptNameCodeSequence), first(num.MeasuredValueSequence)));
  }
  const sites = seq.filter(i => first(i.ConceptNameCodeSequence).CodingSchemeDesignator === 'SCT'
                                && first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.FindingSiteSCT);
  if (sites.length) m.labels.push({ label: CodeNameCodeSequenceValues.FindingSiteSCT, value: first(sites[0].ConceptCodeSequence).CodeMeaning });
  return m;
}

function processNonGeometric(seq) {
  const uidItem = seq.find(i => i.ValueType === 'UIDREF');
  const tracking = seq.find(i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.TrackingIdentifier);
  const m = { loaded: false, labels: [], coords: [], TrackingUniqueIdentifier: uidItem.UID, TrackingIdentifier: tracking.TextValue };
  for (const num of seq.filter(i => i.ValueType === 'NUM')) {
    const { ContentSequence, MeasuredValueSequence } = num;
    if (ContentSequence) {
      const arr = asArray(ContentSequence);
      const g = arr.find(i => (i.ValueType === 'SCOORD' || i.ValueType === 'SCOORD3D') && !i.ConceptNameCodeSequence)
        ?? arr.find(i => i.ValueType === 'SCOORD' || i.ValueType === 'SCOORD3D');
      if (!g) continue; // "ContentSequence array contains no SCOORD or SCOORD3D entry, skipping annotation."
      const c = coordsOf(g);
      if (c) m.coords.push(c);
    }
    if (MeasuredValueSequence) m.labels.push(labelOf(first(num.ConceptNameCodeSequence), first(MeasuredValueSequence)));
  }
  return m;
}

function getMeasurements(contentSequence) {
  const imaging = contentSequence.find(i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.ImagingMeasurements);
  if (!imaging) return [];
  const groups = asArray(imaging.ContentSequence).filter(
    i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.MeasurementGroup);
  const merged = {};
  for (const g of groups) {
    const seq = asArray(g.ContentSequence);
    const t = seq.find(i => first(i.ConceptNameCodeSequence).CodeValue === CodeNameCodeSequenceValues.TrackingUniqueIdentifier);
    const uid = t.UID; // OHIF: TypeError here for a group without a Tracking Unique Identifier
    if (merged[uid] === undefined) merged[uid] = [...seq];
    else seq.forEach(i => { if (first(i.ConceptNameCodeSequence).CodeValue !== CodeNameCodeSequenceValues.TrackingUniqueIdentifier) merged[uid].push(i); });
  }
  const out = [];
  for (const uid of Object.keys(merged)) {
    const seq = merged[uid];
    const geometric = seq.some(i => {
      if (i.ValueType !== 'SCOORD' && i.ValueType !== 'SCOORD3D') return false;
      const c = first(i.ConceptNameCodeSequence);
      return !(c && c.CodeValue === TEXT_ANNOTATION_POSITION.value && c.CodingSchemeDesignator === TEXT_ANNOTATION_POSITION.schemeDesignator);
    });
    const m = geometric ? processTID1410(seq) : processNonGeometric(seq);
    if (m) out.push(m);
  }
  return out;
}

// OHIF's getRenderableData: image coordinates -> patient coordinates, per graphic type.
function renderable({ GraphicType, GraphicData, ValueType }, imageId) {
  const pts = [];
  if (ValueType === 'SCOORD3D') {
    for (let i = 0; i < GraphicData.length; i += 3) pts.push(GraphicData.slice(i, i + 3));
  } else {
    for (let i = 0; i < GraphicData.length; i += 2) pts.push(cs.utilities.imageToWorldCoords(imageId, [GraphicData[i], GraphicData[i + 1]]));
  }
  if (GraphicType === 'ELLIPSE') {
    const plane = cs.metaData.get('imagePlaneModule', imageId);
    const col = plane.columnCosines;
    const unit = (a, b) => { const d = b.map((v, k) => v - a[k]); const n = Math.hypot(...d); return d.map(v => v / n); };
    const dot = (a, b) => a.reduce((s, v, k) => s + v * b[k], 0);
    const major = Math.abs(dot(col, unit(pts[0], pts[1])));
    const minor = Math.abs(dot(col, unit(pts[2], pts[3])));
    if (!(Math.abs(major - 1) < 1e-4 || Math.abs(minor - 1) < 1e-4)) throw new Error('OBLIQUE ELLIPSE NOT YET SUPPORTED');
  } else if (!['POINT', 'MULTIPOINT', 'POLYLINE', 'CIRCLE'].includes(GraphicType)) {
    throw new Error(`Unsupported GraphicType: ${GraphicType}`);
  }
  return pts;
}

// OHIF's _checkIfCanAddMeasurementsToDisplaySet (the "A" step of the handler)
function addToDisplaySet(srDisplaySet, displaySet, warnings) {
  const unloaded = srDisplaySet.measurements.filter(m => m.loaded === false);
  if (!unloaded.length) return;
  const byKey = new Map();
  for (const imageId of displaySet.imageIds) byKey.set(`${images.get(imageId).SOPInstanceUID}:1`, imageId);
  for (let n = unloaded.length - 1; n >= 0; n--) {
    const m = unloaded[n];
    const ref = m.coords[0].ReferencedSOPSequence; // OHIF: TypeError when a measurement has no coordinates
    if (!ref) continue;
    const sop = ref.ReferencedSOPInstanceUID;
    const frame = ref.ReferencedFrameNumber || 1;
    const imageId = byKey.get(`${sop}:${frame}`);
    if (!imageId) continue;
    if (!m.coords.some(c => c.ReferencedSOPSequence.ReferencedSOPInstanceUID === sop)) continue;
    m.renderable = m.coords.map(c => renderable(c, imageId));
    m.loaded = true;
    m.imageId = imageId;
    m.displaySetInstanceUID = displaySet.displaySetInstanceUID;
    m.ReferencedSOPInstanceUID = sop;
    m.frameNumber = frame;
  }
  void warnings;
}

// OHIF's isRehydratable against the measurement service's Cornerstone3D mappings (OHIF 3.13's
// cornerstone extension maps these annotation types).
const OHIF_MAPPED_TOOLS = ['Length', 'Bidirectional', 'EllipticalROI', 'CircleROI', 'ArrowAnnotate', 'Angle',
  'CobbAngle', 'RectangleROI', 'PlanarFreehandROI', 'SplineROI', 'LivewireContour', 'Probe', 'UltrasoundDirectional'];
function isRehydratable(measurements) {
  for (const m of measurements) {
    const { TrackingIdentifier = '', graphicType, graphicCode, pointsLength } = m;
    if (!TrackingIdentifier && !graphicType) continue;
    const a = MeasurementReport.getAdapterForTrackingIdentifier(TrackingIdentifier);
    const b = MeasurementReport.getAdaptersForTypes(graphicCode, graphicType, pointsLength);
    if ((a && OHIF_MAPPED_TOOLS.includes(a.toolType)) || (b && b.some(x => OHIF_MAPPED_TOOLS.includes(x.toolType)))) return true;
  }
  return false;
}

function readSR(file, warnings) {
  const { ds } = readDicom(file);
  const concept = first(ds.ConceptNameCodeSequence);
  const isImagingMeasurementReport = !!concept && concept.CodeValue === CodeNameCodeSequenceValues.ImagingMeasurementReport;
  const srDisplaySet = { SOPClassUID: ds.SOPClassUID, isImagingMeasurementReport };
  srDisplaySet.referencedImages = isImagingMeasurementReport ? getReferencedImagesList(ds.ContentSequence) : [];
  srDisplaySet.measurements = isImagingMeasurementReport ? getMeasurements(ds.ContentSequence) : [];
  for (const d of displaySets()) addToDisplaySet(srDisplaySet, d, warnings);
  srDisplaySet.isRehydratable = isRehydratable(srDisplaySet.measurements);
  // hydration (OHIF's hydrateStructuredReport -> MeasurementReport.generateToolState)
  const sopToImageId = {};
  for (const m of srDisplaySet.measurements) {
    if (m.imageId) sopToImageId[`${m.ReferencedSOPInstanceUID}:${m.frameNumber || 1}`] = m.imageId;
  }
  for (const [imageId, h] of images) sopToImageId[`${h.SOPInstanceUID}:1`] ??= imageId;
  const toolState = MeasurementReport.generateToolState(ds, sopToImageId, cs.metaData);
  const annotations = [];
  for (const [toolType, list] of Object.entries(toolState)) {
    for (const a of list) {
      annotations.push({ toolType, TrackingUniqueIdentifier: a.TrackingUniqueIdentifier,
                         sopInstanceUid: a.sopInstanceUid, label: a.annotation?.data?.label ?? null,
                         points: (a.annotation?.data?.handles?.points ?? []).length,
                         contourPoints: (a.annotation?.data?.contour?.polyline ?? []).length });
    }
  }
  return {
    isImagingMeasurementReport,
    referencedImages: srDisplaySet.referencedImages,
    measurements: srDisplaySet.measurements.map(m => ({
      TrackingIdentifier: m.TrackingIdentifier, TrackingUniqueIdentifier: m.TrackingUniqueIdentifier,
      loaded: m.loaded, graphicType: m.graphicType ?? m.coords?.[0]?.GraphicType ?? null,
      ReferencedSOPInstanceUID: m.ReferencedSOPInstanceUID ?? null, labels: m.labels,
      worldPoints: m.renderable ? m.renderable.reduce((s, r) => s + r.length, 0) : 0,
    })),
    isRehydratable: srDisplaySet.isRehydratable,
    annotations,
  };
}

async function readSEG(file) {
  const { ds, arrayBuffer } = readDicom(file);
  const refSeries = first(ds.ReferencedSeriesSequence).SeriesInstanceUID;
  const set = displaySets().find(d => d.SeriesInstanceUID === refSeries);
  if (!set) throw new Error(`the SEG's referenced series ${refSeries} is not among the images`);
  const result = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(
    set.imageIds, arrayBuffer, { metadataProvider: cs.metaData });
  const voxels = {};
  const slices = {};
  result.labelMapImages.flat().forEach((img, k) => {
    const data = img.voxelManager ? img.voxelManager.getScalarData() : img.getPixelData();
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v) { voxels[v] = (voxels[v] || 0) + 1; (slices[v] ??= new Set()).add(k); }
    }
  });
  const segments = [];
  for (const s of result.segMetadata.data) {
    if (!s) continue;
    const lab = s.RecommendedDisplayCIELabValue;
    segments.push({
      SegmentNumber: s.SegmentNumber, SegmentLabel: s.SegmentLabel,
      rgb: lab ? dcmjs.data.Colors.dicomlab2RGB(lab.map(Number)).map(v => Math.round(v * 255)) : null,
      voxels: voxels[s.SegmentNumber] || 0, slices: slices[s.SegmentNumber] ? slices[s.SegmentNumber].size : 0,
    });
  }
  return { referencedSeries: refSeries, images: set.imageIds.length, overlapping: result.overlappingSegments, segments };
}

const args = parseArgs(process.argv.slice(2));
cs.metaData.addProvider(provider, 10000);
loadImages(args.images);
const warnings = [];
const out = { images: images.size };
if (args.sr) out.sr = readSR(args.sr, warnings);
if (args.seg) out.seg = await readSEG(args.seg);
process.stdout.write(JSON.stringify(out, null, 1));
