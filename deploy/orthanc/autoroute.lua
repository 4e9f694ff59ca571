-- Auto-route stable MR studies to the followup DICOM listener (modality "followup"),
-- skipping studies without MR series (e.g. only the SR/SEG/DOC objects followup sends back).
function OnStableStudy(studyId, tags, metadata)
  local study = ParseJson(RestApiGet('/studies/' .. studyId))
  local mr = false
  for _, seriesId in pairs(study['Series']) do
    local series = ParseJson(RestApiGet('/series/' .. seriesId))
    if series['MainDicomTags']['Modality'] == 'MR' then mr = true end
  end
  if mr then
    print('followup: routing stable MR study ' .. studyId)
    -- C-STORE of the whole study through the REST API (synchronous; Orthanc logs failures)
    RestApiPost('/modalities/followup/store', studyId)
  end
end
