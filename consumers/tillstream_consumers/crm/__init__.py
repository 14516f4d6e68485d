"""CRM profiles: what tillstream knows about loyalty customers, and how it forgets them.

Run it with ``tillstream consume crm``; see ``docs/crm.md``.
"""

from tillstream_consumers.crm.segments import Segment, segment_of
from tillstream_consumers.crm.service import CrmProfiles
from tillstream_consumers.crm.tables import Profile, load_profile

__all__ = ["CrmProfiles", "Profile", "Segment", "load_profile", "segment_of"]
