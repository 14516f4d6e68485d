"""Head-office consumer services: ERP inventory, CRM profiles, analytics."""
