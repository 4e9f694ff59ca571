-- Auto-route stable MR studies to the followup DICOM listener (modality "followup"),
-- skipping the objects followup itself sends back (SR, SEG, DOC).
function OnStableStudy(studyId, tags, metadata)
  local study = ParseJson(RestApiGet('/studies/' .. studyId))
  local mr = false
  for _, seriesId in pairs(study['Series']) do
    local series = ParseJson(RestApiGet('/series/' .. seriesId))
    if series['MainDicomTags']['Modality'] == 'MR' then mr = true end
  end
  if mr then
    print('followup: routing stable MR study ' .. studyId)
    SendToModality(studyId, 'followup')
  end
end
