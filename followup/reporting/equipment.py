"""The product in the headers of the objects it makes (IHE AI Results): Manufacturer, model name
and software version, and the product as the Contributing Equipment that processed the source
images - in place of the library (highdicom) that wrote the bytes."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset

from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION

MANUFACTURER = "followup"
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")
DESCRIPTION = "followup: automated residual-tumour assessment after breast cryoablation"


def product_equipment(when: dt.datetime | None = None) -> Dataset:
    """A Contributing Equipment item naming the product."""
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = ALGORITHM_NAME
    item.SoftwareVersions = ALGORITHM_VERSION
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROCESSING_EQUIPMENT
    item.PurposeOfReferenceCodeSequence = [code]
    item.ContributionDateTime = (when or dt.datetime.now()).strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = DESCRIPTION
    return item


def stamp_product(ds: Dataset) -> Dataset:
    """Name the product in ``ds``'s General Equipment and Contributing Equipment; the items of
    other equipment (the scanner that acquired the source images) stay, a library's item goes."""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = ALGORITHM_NAME
    ds.SoftwareVersions = ALGORITHM_VERSION
    kept = [item for item in ds.get("ContributingEquipmentSequence", [])
            if not _is_processing(item)]
    ds.ContributingEquipmentSequence = [*kept, product_equipment()]
    return ds


def _is_processing(item: Dataset) -> bool:
    codes = item.get("PurposeOfReferenceCodeSequence", [])
    return any(c.get("CodeValue") == PROCESSING_EQUIPMENT[0] for c in codes)


__all__ = ["product_equipment", "stamp_product"]
